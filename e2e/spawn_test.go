//go:build linux

package e2e

import (
	"os/exec"
	"runtime"
	"syscall"
)

// Children get Pdeathsig SIGKILL so that nothing outlives a crashed test
// binary. Pdeathsig fires when the *thread* that forked the child exits,
// and Go ends threads that exit while locked (as the setns helpers do), so
// every child is started from one locked thread that lives as long as the
// test binary.
var spawnReq = make(chan spawnJob)

type spawnJob struct {
	cmd  *exec.Cmd
	errc chan error
}

func init() {
	go func() {
		runtime.LockOSThread() // never unlocked: this thread lives until exit
		for job := range spawnReq {
			job.errc <- job.cmd.Start()
		}
	}()
}

// startChild starts cmd with Pdeathsig SIGKILL from the spawner thread.
func startChild(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	errc := make(chan error, 1)
	spawnReq <- spawnJob{cmd, errc}
	return <-errc
}
