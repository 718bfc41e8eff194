#!/usr/bin/env bash
# Installs what building, testing and the VM kernel matrix need (Debian 12).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(clang llvm libbpf-dev make git qemu-system-x86 busybox-static kmod xz-utils zstd iproute2 nftables iputils-ping)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# apt-get download (for the VM kernels) needs package lists.
ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 || apt-get update -qq
if ((${#missing[@]})); then
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "deps: ok (${#missing[@]} installed)"
