package vm

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Kernels pins the Debian kernel package behind each short name. Override one
// with IPFTRACE_VM_PKG_<name with dots as underscores>, e.g.
// IPFTRACE_VM_PKG_6_12=linux-image-6.12.115+deb12-amd64-unsigned, or pass a
// full package name to -kernel.
//
// Only the generic "-amd64" flavour works: the cloud flavour has no 9p.
var Kernels = map[string]string{
	// KPROBES, fentry; no kprobe-multi (FPROBE) in 6.1.
	"6.1": "linux-image-6.1.0-56-amd64-unsigned",
	// KPROBES, FPROBE (kprobe-multi), fentry.
	"6.12": "linux-image-6.12.117+deb12-amd64-unsigned",
}

// ResolvePackage maps a -kernel value to a Debian package name.
func ResolvePackage(name string) (string, error) {
	if strings.HasPrefix(name, "linux-image-") {
		return name, nil
	}
	env := "IPFTRACE_VM_PKG_" + strings.ReplaceAll(name, ".", "_")
	if v := os.Getenv(env); v != "" {
		return v, nil
	}
	if p, ok := Kernels[name]; ok {
		return p, nil
	}
	var names []string
	for k := range Kernels {
		names = append(names, k)
	}
	sort.Strings(names)
	return "", fmt.Errorf("unknown kernel %q (want one of %s, or a linux-image-* package name)", name, strings.Join(names, ", "))
}

// Kernel is an unpacked kernel package in the cache.
type Kernel struct {
	Package string
	Dir     string // cache dir of this package
	Release string // uname -r
	Vmlinuz string
	Vmlinux string // uncompressed ELF (PVH boot, skips the slow in-guest decompression), "" if none
	ModDir  string // .../lib/modules/<release>
}

func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// FetchKernel downloads (apt-get download) and unpacks pkg into cacheDir
// unless already there. logf reports progress.
func FetchKernel(cacheDir, pkg string, logf func(string, ...any)) (*Kernel, error) {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, err
	}
	unlock, err := lock(filepath.Join(cacheDir, pkg+".lock"))
	if err != nil {
		return nil, fmt.Errorf("lock cache: %w", err)
	}
	defer unlock()

	dir := filepath.Join(cacheDir, pkg)
	if k, err := loadKernel(dir, pkg); err == nil {
		if k.Vmlinux == "" && !fileExists(filepath.Join(dir, "vmlinux.none")) { // cache from an older runner
			if err := extractVmlinux(k.Vmlinuz, filepath.Join(dir, "vmlinux")); err != nil {
				os.WriteFile(filepath.Join(dir, "vmlinux.none"), []byte(err.Error()+"\n"), 0o644)
			}
			return loadKernel(dir, pkg)
		}
		return k, nil
	}

	if err := need(map[string]string{"apt-get": "apt", "dpkg-deb": "dpkg", "tar": "tar", "depmod": "kmod",
		"modprobe": "kmod", "xz": "xz-utils", "zstd": "zstd"}); err != nil {
		return nil, err
	}
	start := time.Now()
	os.RemoveAll(dir)
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	logf("downloading %s (apt-get download)", pkg)
	cmd := exec.Command("apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", pkg)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("apt-get download %s: %v\n%s(no package lists? run apt-get update; wrong name? apt-cache search linux-image-6.12 | grep -- '-amd64')", pkg, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return nil, fmt.Errorf("apt-get download %s: expected one .deb, got %v", pkg, debs)
	}
	dl := time.Since(start)
	root := filepath.Join(tmp, "root")
	if err := unpack(debs[0], root); err != nil {
		return nil, err
	}
	os.Remove(debs[0])
	mods, _ := filepath.Glob(filepath.Join(root, "lib/modules/*"))
	if len(mods) != 1 {
		return nil, fmt.Errorf("%s: expected one lib/modules/<release>, got %v", pkg, mods)
	}
	release := filepath.Base(mods[0])
	unpackTime := time.Since(start) - dl
	if out, err := exec.Command("depmod", "-b", root, release).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("depmod -b %s %s: %v\n%s", root, release, err, out)
	}
	if err := extractVmlinux(filepath.Join(root, "boot", "vmlinuz-"+release), filepath.Join(tmp, "vmlinux")); err != nil {
		logf("warning: no uncompressed vmlinux, booting the slower bzImage: %v", err)
		os.WriteFile(filepath.Join(tmp, "vmlinux.none"), []byte(err.Error()+"\n"), 0o644)
	}
	if err := os.WriteFile(filepath.Join(tmp, "release"), []byte(release+"\n"), 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	logf("kernel %s ready: download %.1fs, unpack %.1fs, depmod+vmlinux %.1fs (total %.1fs)",
		release, dl.Seconds(), unpackTime.Seconds(), (time.Since(start) - dl - unpackTime).Seconds(), time.Since(start).Seconds())
	return loadKernel(dir, pkg)
}

// prunedModules are module directories no test needs (hardware drivers);
// leaving them out makes the unpack and especially depmod (which
// decompresses every module) several times faster.
var prunedModules = []string{
	"sound", "drivers/gpu", "drivers/media", "drivers/net/wireless", "drivers/net/ethernet",
	"drivers/net/usb", "drivers/net/can", "drivers/infiniband", "drivers/scsi", "drivers/usb",
	"drivers/iio", "drivers/staging", "drivers/hid", "drivers/input", "drivers/bluetooth",
	"drivers/mmc", "drivers/mtd", "drivers/video", "drivers/platform", "drivers/hwmon",
	"drivers/isdn", "drivers/atm", "drivers/ata", "drivers/target", "drivers/thunderbolt",
	"drivers/firewire", "drivers/nfc", "drivers/w1", "drivers/i2c", "drivers/spi",
	"drivers/leds", "drivers/power", "drivers/regulator", "drivers/mfd", "drivers/pinctrl",
	"drivers/gpio", "drivers/rtc", "drivers/edac", "drivers/misc", "drivers/comedi",
	"drivers/watchdog", "drivers/fpga", "drivers/nvme", "drivers/md", "drivers/infiniband",
	"net/bluetooth", "net/mac80211", "net/wireless",
}

// unpack extracts the kernel image, config and the (pruned) module tree.
func unpack(deb, root string) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	args := []string{"-x", "-C", root, "--wildcards"}
	for _, p := range prunedModules {
		args = append(args, "--exclude=./lib/modules/*/kernel/"+p)
	}
	args = append(args, "./boot/vmlinuz-*", "./boot/config-*", "./lib/modules")
	dpkg := exec.Command("dpkg-deb", "--fsys-tarfile", deb)
	tar := exec.Command("tar", args...)
	pipe, err := dpkg.StdoutPipe()
	if err != nil {
		return err
	}
	tar.Stdin = pipe
	var derr, terr bytes.Buffer
	dpkg.Stderr, tar.Stdout, tar.Stderr = &derr, &terr, &terr
	if err := dpkg.Start(); err != nil {
		return err
	}
	if err := tar.Run(); err != nil {
		dpkg.Process.Kill()
		dpkg.Wait()
		return fmt.Errorf("unpack %s: tar: %v\n%s", deb, err, terr.String())
	}
	if err := dpkg.Wait(); err != nil {
		return fmt.Errorf("unpack %s: dpkg-deb --fsys-tarfile: %v\n%s", deb, err, derr.String())
	}
	return nil
}

func loadKernel(dir, pkg string) (*Kernel, error) {
	b, err := os.ReadFile(filepath.Join(dir, "release"))
	if err != nil {
		return nil, err
	}
	rel := strings.TrimSpace(string(b))
	k := &Kernel{
		Package: pkg,
		Dir:     dir,
		Release: rel,
		Vmlinuz: filepath.Join(dir, "root/boot/vmlinuz-"+rel),
		ModDir:  filepath.Join(dir, "root/lib/modules", rel),
	}
	for _, p := range []string{k.Vmlinuz, filepath.Join(k.ModDir, "modules.dep")} {
		if _, err := os.Stat(p); err != nil {
			return nil, err
		}
	}
	if p := filepath.Join(dir, "vmlinux"); fileExists(p) {
		k.Vmlinux = p
	}
	return k, nil
}

// need checks that the tools (tool -> Debian package) are installed.
func need(tools map[string]string) error {
	var missing []string
	for t, pkg := range tools {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, pkg)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("missing tools; apt-get install %s", strings.Join(missing, " "))
	}
	return nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// extractVmlinux decompresses the ELF kernel embedded in a bzImage (what
// scripts/extract-vmlinux does). qemu boots it through PVH, which saves the
// guest's own decompression: seconds under TCG.
func extractVmlinux(vmlinuz, out string) error {
	data, err := os.ReadFile(vmlinuz)
	if err != nil {
		return err
	}
	formats := []struct {
		magic []byte
		tool  []string
	}{
		{[]byte("\xfd7zXZ\x00"), []string{"xz", "-dc", "--single-stream"}},
		{[]byte("\x28\xb5\x2f\xfd"), []string{"zstd", "-dcq"}},
		{[]byte("\x1f\x8b\x08"), []string{"gzip", "-dcq"}},
	}
	for _, f := range formats {
		for off := 0; ; {
			i := bytes.Index(data[off:], f.magic)
			if i < 0 {
				break
			}
			off += i
			var elf bytes.Buffer
			cmd := exec.Command(f.tool[0], f.tool[1:]...)
			cmd.Stdin = bytes.NewReader(data[off:])
			cmd.Stdout = &elf
			cmd.Run() // trailing data after the stream makes some tools fail: judge the output
			b := elf.Bytes()
			if len(b) > len(data) && bytes.HasPrefix(b, []byte("\x7fELF")) {
				return os.WriteFile(out, b, 0o644)
			}
			off++
		}
	}
	return fmt.Errorf("%s: no compressed ELF found", vmlinuz)
}

//go:embed init.sh
var initScript []byte

// earlyModules must be loaded from the initramfs, before the host root is
// mounted. Built-in ones are skipped (modprobe reports them as "builtin").
var earlyModules = []string{"virtio_pci", "9pnet_virtio", "9p", "overlay"}

// initramfsVersion is bumped when the layout built here changes.
const initramfsVersion = "2"

// Initramfs returns the path of a cached initramfs for k, building it if
// the inputs (busybox, module list, init script) changed.
func Initramfs(k *Kernel, busybox string, logf func(string, ...any)) (string, error) {
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return "", fmt.Errorf("busybox (apt-get install busybox-static): %w", err)
	}
	if err := need(map[string]string{"modprobe": "kmod", "xz": "xz-utils", "zstd": "zstd"}); err != nil {
		return "", err
	}
	mods, err := moduleClosure(k)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n", initramfsVersion, k.Release)
	h.Write(bb)
	h.Write(initScript)
	for _, m := range mods {
		fmt.Fprintln(h, m)
	}
	sum := hex.EncodeToString(h.Sum(nil))[:16]
	path := filepath.Join(k.Dir, "initramfs-"+sum+".cpio")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}

	start := time.Now()
	var buf bytes.Buffer
	c := &cpioWriter{w: &buf}
	for _, d := range []string{"bin", "dev", "etc", "proc", "sys", "lib", "lib/modules", "lower", "upper", "newroot", "share", "tmp"} {
		c.Dir(d)
	}
	c.CharDev("dev/console", 5, 1)
	c.CharDev("dev/null", 1, 3)
	c.File("bin/busybox", 0o755, bb)
	c.Symlink("bin/sh", "busybox")
	c.File("init", 0o755, initScript)
	var list []string
	for _, m := range mods {
		data, err := readModule(m)
		if err != nil {
			return "", err
		}
		name := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(filepath.Base(m), ".xz"), ".zst"), ".gz")
		c.File("lib/modules/"+name, 0o644, data)
		list = append(list, name)
	}
	c.File("etc/modules", 0o644, []byte(strings.Join(list, "\n")+"\n"))
	if err := c.Close(); err != nil {
		return "", err
	}
	old, _ := filepath.Glob(filepath.Join(k.Dir, "initramfs-*.cpio"))
	for _, o := range old {
		os.Remove(o)
	}
	tmp := path + ".tmp" + fmt.Sprint(os.Getpid())
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	logf("built initramfs %s (%d modules: %s) in %.1fs", filepath.Base(path), len(list), strings.Join(list, " "), time.Since(start).Seconds())
	return path, nil
}

// moduleClosure lists the .ko files (dependencies first) needed for
// earlyModules, resolved with the host's kmod against the unpacked tree.
func moduleClosure(k *Kernel) ([]string, error) {
	root := filepath.Dir(filepath.Dir(filepath.Dir(k.ModDir))) // .../root
	seen := map[string]bool{}
	var out []string
	for _, m := range earlyModules {
		cmd := exec.Command("modprobe", "-d", root, "-S", k.Release, "--show-depends", m)
		b, err := cmd.CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("modprobe --show-depends %s: %v\n%s", m, err, b)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) >= 2 && f[0] == "insmod" && !seen[f[1]] {
				seen[f[1]] = true
				out = append(out, f[1])
			}
		}
	}
	return out, nil
}

func readModule(path string) ([]byte, error) {
	var tool string
	switch {
	case strings.HasSuffix(path, ".xz"):
		tool = "xz"
	case strings.HasSuffix(path, ".zst"):
		tool = "zstd"
	case strings.HasSuffix(path, ".gz"):
		tool = "gzip"
	default:
		return os.ReadFile(path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out bytes.Buffer
	cmd := exec.Command(tool, "-dc")
	cmd.Stdin = f
	cmd.Stdout = &out
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s -dc %s: %v %s", tool, path, err, stderr.String())
	}
	return out.Bytes(), nil
}
