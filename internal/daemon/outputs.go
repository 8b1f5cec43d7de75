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
// cursors) before the manager closes. Without outputs it only answers
// GET /v1/outputs with an empty list.
func (d *Daemon) startOutputs(context.Context) (func(), error) {
	dir := filepath.Join(d.cfg.Data, "outputs")
	if len(d.cfg.Outputs) > 0 {
		if err := d.mkdirs(dir); err != nil {
			return nil, err
		}
	}
	outs, err := output.New(output.Options{Outputs: d.cfg.Outputs, Dir: dir, Manager: d.manager,
		Logger: d.log.With("component", "outputs")})
	if err != nil {
		return nil, err
	}
	d.serve(outs.Register)
	if len(d.cfg.Outputs) == 0 {
		return nil, nil
	}
	d.outputs = outs
	d.register(outs.Collector())
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
