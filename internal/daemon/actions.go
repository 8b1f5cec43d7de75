package daemon

import (
	"context"
	"errors"
	"path/filepath"
	"sync"

	"github.com/semprop/semprop/internal/action"
	"github.com/semprop/semprop/internal/audit"
)

// startActions runs the action executor when rule files are configured:
// it reads rule matches from the journal at its own cursor (DATA/actions),
// records every step in the audit trail (DATA/audit) and keeps snapshots
// in DATA/snapshots. File actions act only beneath actions.roots (by
// default the watched and mounted trees).
func (d *Daemon) startActions(ctx context.Context) (func(), error) {
	if d.cfg.Rules == nil {
		return nil, nil
	}
	dir := filepath.Join(d.cfg.Data, "actions")
	if err := d.mkdirs(dir); err != nil {
		return nil, err
	}
	alog, err := audit.Open(filepath.Join(d.cfg.Data, "audit"), d.log.With("component", "audit"))
	if err != nil {
		return nil, err
	}
	dirs := d.cfg.Actions.Roots
	if len(dirs) == 0 {
		for _, w := range d.cfg.Watches {
			dirs = append(dirs, w.Root)
		}
		for _, m := range d.cfg.Mounts {
			// The mount point may not exist yet (capture creates it).
			if err := d.mkdirs(m.Mountpoint); err != nil {
				alog.Close()
				return nil, err
			}
			dirs = append(dirs, m.Backing, m.Mountpoint)
		}
	}
	roots, err := action.NewRoots(dirs...)
	if err != nil {
		alog.Close()
		return nil, err
	}
	store, err := d.snapshotStore()
	if err != nil {
		alog.Close()
		return nil, err
	}
	env := &action.Env{Roots: roots, Snapshots: store, QuarantineDir: d.cfg.Actions.QuarantineDir,
		Signals: d.cfg.Actions.Signals, QuarantineFor: d.cfg.Guard.QuarantineFor}
	if env.QuarantineDir == "" {
		env.QuarantineDir = filepath.Join(d.cfg.Data, "quarantine")
	}
	if d.guard != nil { // a nil *guard.Guard in the interface would not be nil
		env.Guard = d.guard
	}
	x, err := action.New(d.cfg.Rules, action.Options{
		Dir:   dir,
		Audit: alog,
		Open: func(from uint64) (action.Source, error) {
			r, err := d.manager.Reader(from)
			if err != nil {
				return nil, err
			}
			return r, nil
		},
		Publisher: d.manager,
		Env:       env,
		Start:     d.journal.LastSeq() + 1, // the first start: new matches only
		Source:    d.cfg.Source + "/actions",
		Logger:    d.log.With("component", "actions"),
	})
	if err != nil {
		alog.Close()
		return nil, err
	}
	d.actions = x
	d.register(x.Collector())
	runCtx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := x.Run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
			d.fail(err)
		}
	})
	return func() {
		stop()
		wg.Wait()
		alog.Close()
	}, nil
}
