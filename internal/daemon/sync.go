package daemon

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"

	"github.com/semprop/semprop/internal/replica"
)

// startSync runs the replicated catalog of file state (docs/sync.md): it
// reads the fs.* events of the named trees from the durable stream and
// exchanges deltas with the peers; GET /v1/state reads it.
func (d *Daemon) startSync(context.Context) (func(), error) {
	if d.cfg.Sync == nil {
		return nil, nil
	}
	dir := filepath.Join(d.cfg.Data, "sync")
	if err := d.mkdirs(dir); err != nil {
		return nil, err
	}
	opts := replica.Options{
		Config: *d.cfg.Sync,
		Dir:    dir,
		Open: func(from uint64) (replica.Source, error) {
			r, err := d.manager.Reader(from)
			if err != nil {
				return nil, err
			}
			return r, nil
		},
		Start:   1, // the whole journal: files known before sync was on are in the catalog
		Resolve: d.treeOf,
		Abs:     d.treePath,
		LastSeq: d.journal.LastSeq,
		Logger:  d.log.With("component", "sync"),
	}
	if d.cluster != nil {
		opts.LinearizableRead = func(ctx context.Context) error { return d.cluster.node.Sync(ctx) }
	}
	rep, err := replica.New(opts)
	if err != nil {
		return nil, err
	}
	d.replica = rep
	d.register(rep.Collector())
	d.serve(rep.Register)
	d.status("sync", func() any { return rep.Status() })
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := rep.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			d.fail(err)
		}
	})
	return func() { stop(); wg.Wait() }, nil
}

// treeOf maps an absolute path to its tree's name and the path relative
// to the tree's root (a mount's backing tree and mount point both map to
// it).
func (d *Daemon) treeOf(abs string) (tree, rel string, ok bool) {
	under := func(root string) (string, bool) {
		if abs == root {
			return "", true
		}
		r, ok := strings.CutPrefix(abs, root+"/")
		return r, ok
	}
	for _, w := range d.cfg.Watches {
		if r, ok := under(w.Root); ok {
			return w.Name, r, true
		}
	}
	for _, m := range d.cfg.Mounts {
		if r, ok := under(m.Mountpoint); ok {
			return m.Name, r, true
		}
		if r, ok := under(m.Backing); ok {
			return m.Name, r, true
		}
	}
	return "", "", false
}

// treePath maps a tree's name and a relative path to the absolute path
// users see on this instance (a mount's mount point).
func (d *Daemon) treePath(tree, rel string) (string, bool) {
	for _, w := range d.cfg.Watches {
		if w.Name == tree {
			return filepath.Join(w.Root, rel), true
		}
	}
	for _, m := range d.cfg.Mounts {
		if m.Name == tree {
			return filepath.Join(m.Mountpoint, rel), true
		}
	}
	return "", false
}
