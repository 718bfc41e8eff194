package tracer

import (
	"context"
	"errors"
)

// Run attaches, traces until ctx is done or a stop condition is met, and
// detaches. It returns after every journey has been written.
func Run(ctx context.Context, cfg Config) error {
	return errors.New("tracer: not implemented yet")
}
