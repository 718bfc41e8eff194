#!/usr/bin/env bash
# Installs what building, testing and the VM kernel matrix need (Debian 12).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(clang llvm libbpf-dev make git qemu-system-x86 busybox-static kmod iproute2 nftables iputils-ping cpio python3)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "deps: ok (${#missing[@]} installed)"
