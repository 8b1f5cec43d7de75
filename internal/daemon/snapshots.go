package daemon

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/semprop/semprop/internal/action"
	"github.com/semprop/semprop/internal/monitor"
)

// pruneEvery is how often the snapshot store is pruned after the prune at
// start.
const pruneEvery = time.Hour

// snapshotPruner keeps DATA/snapshots within actions.snapshot_retention
// and actions.snapshot_max_size.
type snapshotPruner struct {
	store *action.Store
	cfg   action.Config

	mu      sync.Mutex
	last    action.PruneResult
	lastErr error
	at      time.Time
	deleted int // snapshots deleted since start
}

func (p *snapshotPruner) prune() (action.PruneResult, error) {
	o := action.PruneOptions{MaxSize: int64(p.cfg.SnapshotMaxSize)}
	if p.cfg.SnapshotRetention > 0 {
		o.Before = time.Now().Add(-p.cfg.SnapshotRetention)
	}
	res, err := p.store.Prune(o)
	p.mu.Lock()
	p.last, p.lastErr, p.at = res, err, time.Now()
	p.deleted += res.Snapshots
	p.mu.Unlock()
	return res, err
}

// check: degraded when the last prune failed or found a manifest it could
// not read (then it deletes no object).
func (p *snapshotPruner) check() monitor.Check {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := monitor.Check{Status: monitor.StatusOK, Measurement: map[string]float64{
		"snapshots": float64(p.last.Kept), "bytes": float64(p.last.KeptBytes), "deleted": float64(p.deleted)}}
	switch {
	case p.lastErr != nil:
		c.Status, c.Reason = monitor.StatusDegraded, fmt.Sprintf("pruning failed: %v", p.lastErr)
	case p.last.Unreadable > 0:
		c.Status, c.Reason = monitor.StatusDegraded, fmt.Sprintf("%d snapshot manifests cannot be read; no object is deleted until they are removed", p.last.Unreadable)
	}
	return c
}

// startSnapshots prunes the snapshot store, when the guard or the actions
// opened it, at start and then every pruneEvery: the snapshots older than
// actions.snapshot_retention, then the oldest until the objects the rest
// reference fit in actions.snapshot_max_size, then the objects no
// snapshot references.
func (d *Daemon) startSnapshots(context.Context) (func(), error) {
	if d.snapshots == nil || d.cfg.Actions.SnapshotRetention == 0 && d.cfg.Actions.SnapshotMaxSize == 0 {
		return nil, nil
	}
	p := &snapshotPruner{store: d.snapshots, cfg: d.cfg.Actions}
	d.pruner = p
	log := d.log.With("component", "snapshots")
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(pruneEvery)
		defer t.Stop()
		for {
			res, err := p.prune()
			switch {
			case err != nil:
				log.Error("pruning snapshots", "err", err)
			case res.Snapshots > 0 || res.Objects > 0:
				log.Info("pruned snapshots", "deleted", res.Snapshots, "objects", res.Objects, "bytes", res.Bytes,
					"kept", res.Kept, "bytes_kept", res.KeptBytes)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	return func() { stop(); wg.Wait() }, nil
}
