package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// readyWatch tells when a file appears, from inotify rather than by
// polling: under TCG emulation, a poll every 5 ms took a sixth of the
// guest's CPU during an fentry attach and slowed the attach it measured.
type readyWatch struct {
	f    *os.File
	name string
	// created is closed once a file of that name is created in the
	// directory (or moved there).
	created chan struct{}
}

// watchReady watches path's directory for path; call it before the file
// can appear, and close the watch when done.
func watchReady(path string) (*readyWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, filepath.Dir(path), unix.IN_CREATE|unix.IN_MOVED_TO); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("inotify watch %s: %w", filepath.Dir(path), err)
	}
	w := &readyWatch{f: os.NewFile(uintptr(fd), "inotify"), name: filepath.Base(path), created: make(chan struct{})}
	go w.run()
	return w, nil
}

func (w *readyWatch) run() {
	buf := make([]byte, 64<<10)
	for {
		n, err := w.f.Read(buf) // blocks in the runtime's poller, not in a thread
		if err != nil {
			return // closed
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
			if i := bytes.IndexByte(name, 0); i >= 0 { // NUL-padded
				name = name[:i]
			}
			if string(name) == w.name {
				close(w.created)
				return
			}
			off += unix.SizeofInotifyEvent + int(ev.Len)
		}
	}
}

// Close stops the watch.
func (w *readyWatch) Close() { w.f.Close() }
