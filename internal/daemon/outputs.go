package daemon

import (
	"context"
	"errors"
	"path/filepath"
	"sync"

	"github.com/semprop/semprop/internal/output"
)

// startOutputs forwards the durable stream to the configured outputs,
// each at its own cursor under DATA/outputs. It stops (saving the
// cursors) before the manager closes.
func (d *Daemon) startOutputs(context.Context) (func(), error) {
	if len(d.cfg.Outputs) == 0 {
		return nil, nil
	}
	dir := filepath.Join(d.cfg.Data, "outputs")
	if err := d.mkdirs(dir); err != nil {
		return nil, err
	}
	outs, err := output.New(output.Options{Outputs: d.cfg.Outputs, Dir: dir, Manager: d.manager,
		Logger: d.log.With("component", "outputs")})
	if err != nil {
		return nil, err
	}
	d.outputs = outs
	d.register(outs.Collector())
	d.serve(outs.Register)
	d.status("outputs", func() any { return outs.Status() })
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := outs.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			d.fail(err)
		}
	})
	return func() { stop(); wg.Wait() }, nil
}
