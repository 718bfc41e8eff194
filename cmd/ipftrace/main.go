// Command ipftrace traces the journey of packets through the Linux network
// stack.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ipftrace/ipftrace/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
