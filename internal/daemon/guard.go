package daemon

import (
	"context"
	"errors"
	"path/filepath"
	"sync"

	"github.com/semprop/semprop/internal/action"
	"github.com/semprop/semprop/internal/guard"
)

// startGuard makes the guard list the mounts consult (a process a rule
// quarantined is refused every change) and, with snapshot_before_destroy,
// the copies of files kept before an operation destroys them. It stops
// after the mounts (steps stop in reverse), so its last batch of copies
// is flushed.
func (d *Daemon) startGuard(context.Context) (func(), error) {
	if !d.cfg.Guard.Enabled || len(d.cfg.Mounts) == 0 && d.cfg.Rules == nil {
		return nil, nil
	}
	dir := filepath.Join(d.cfg.Data, "guard")
	if err := d.mkdirs(dir); err != nil {
		return nil, err
	}
	store, err := d.snapshotStore()
	if err != nil {
		return nil, err
	}
	g, err := guard.New(guard.Options{Config: d.cfg.Guard, Snapshots: store, Dir: dir, Logger: d.log.With("component", "guard")})
	if err != nil {
		return nil, err
	}
	d.guard = g
	d.register(g.Collector())
	d.serve(g.Register)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := g.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			d.fail(err)
		}
	})
	return func() { stop(); wg.Wait() }, nil
}

// snapshotStore opens DATA/snapshots once for the guard and the actions.
func (d *Daemon) snapshotStore() (*action.Store, error) {
	if d.snapshots != nil {
		return d.snapshots, nil
	}
	s, err := action.OpenStore(filepath.Join(d.cfg.Data, "snapshots"))
	if err != nil {
		return nil, err
	}
	d.snapshots = s
	return s, nil
}
