#!/bin/sh
# ipftrace VM initramfs /init (busybox sh).
# Mounts the host / (9p, read-only) under a tmpfs overlay, the run directory
# shared with the host (9p, writable) at /run/ipftrace-vm, the guest kernel's
# module tree at /lib/modules/$(uname -r), then switch_roots into the host
# root and runs /run/ipftrace-vm/run.sh (written by the host runner).
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# Our output goes to ttyS0 (the runner's stdout); the kernel console is ttyS1.
exec </dev/null >/dev/ttyS0 2>&1
stty raw -echo </dev/ttyS0

die() {
	echo "vm-init: $*"
	echo "IPFTRACE_VM_INIT_FAILED"
	echo o >/proc/sysrq-trigger
	sleep 5
	exit 1
}

for m in $(cat /etc/modules); do
	insmod /lib/modules/$m 2>/tmp/insmod.err || {
		grep -q 'File exists' /tmp/insmod.err || echo "vm-init: insmod $m: $(cat /tmp/insmod.err)"
	}
done

mount9p() { # tag dir opts
	i=0
	while ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,$3 "$1" "$2" 2>/tmp/mount.err; do
		i=$((i + 1))
		[ $i -ge 50 ] && die "mount 9p $1: $(cat /tmp/mount.err)"
		sleep 0.1
	done
}
mount9p hostroot /lower ro,cache=loose
mount9p ipfshare /share cache=none
. /share/boot.conf

mount -t tmpfs -o mode=0755 tmpfs /upper
mkdir -p /upper/u /upper/w
mount -t overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w overlay /newroot ||
	die "overlay mount failed"

R=/newroot
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts $R/dev/pts
mount -t tmpfs tmpfs $R/dev/shm
mount -t tmpfs -o mode=0755 tmpfs $R/run
mkdir -p $R/run/ipftrace-vm
mount --move /share $R/run/ipftrace-vm
mount -t debugfs debugfs $R/sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs $R/sys/kernel/tracing 2>/dev/null
mount -t bpf bpf $R/sys/fs/bpf
mount -t cgroup2 cgroup2 $R/sys/fs/cgroup 2>/dev/null
[ "$VM_TMPFS_TMP" = 1 ] && mount -t tmpfs tmpfs $R/tmp
i=0
while [ $i -lt "${VM_RW_N:-0}" ]; do
	eval "d=\$VM_RW_$i"
	mkdir -p "$R$d"
	mount9p rw$i "$R$d" cache=none
	i=$((i + 1))
done
KVER=$(uname -r)
mkdir -p $R/lib/modules/$KVER
mount --bind "$R$VM_MODDIR" $R/lib/modules/$KVER || die "bind modules $VM_MODDIR"
hostname ipftrace-vm
ip link set lo up
echo 1 >/proc/sys/kernel/panic_on_oops 2>/dev/null
exec switch_root $R /bin/sh /run/ipftrace-vm/run.sh
die "switch_root failed"
