package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/semprop/semprop/internal/bridge"
	"github.com/semprop/semprop/internal/capture/fanotify"
	"github.com/semprop/semprop/internal/capture/fusefs"
	"github.com/semprop/semprop/internal/capture/procinfo"
	"github.com/semprop/semprop/internal/enrich"
)

// tree is one captured tree: a bridge, the kernel watcher of the tree (or
// of a mount's backing tree) and, for a mount, the FUSE boundary.
type tree struct {
	name    string
	bridge  *bridge.Bridge
	enrich  *enrich.Publisher // between the bridge and the manager
	watcher *fanotify.Watcher
	mount   *fusefs.FS

	stopWatcher, stopBridge context.CancelFunc
	watching, bridging      sync.WaitGroup
}

// startCapture starts one tree per --watch and per --mount, and the
// process-identity cache they share.
func (d *Daemon) startCapture(ctx context.Context) (func(), error) {
	if len(d.cfg.Watches)+len(d.cfg.Mounts) > 0 {
		procs, err := procinfo.Start(ctx, d.log)
		if err != nil {
			d.log.Warn("process identities are read from /proc when each event is processed; short-lived processes may lose comm and exe", "err", err)
		} else {
			d.procs = procs
			d.register(procs.Collector())
		}
	}
	stop := func() {
		for i := len(d.trees) - 1; i >= 0; i-- {
			d.trees[i].stop(d)
		}
		d.procs.Close() // nil-safe
	}
	for _, w := range d.cfg.Watches {
		if err := d.startTree(ctx, w.Root, "", "", w.Enrich); err != nil {
			stop()
			return nil, err
		}
	}
	for _, m := range d.cfg.Mounts {
		if err := d.startTree(ctx, m.Backing, m.Mountpoint, m.Spec, m.Enrich); err != nil {
			stop()
			return nil, err
		}
	}
	return stop, nil
}

// startTree starts the bridge, then the FUSE mount (for a mount), then
// the kernel watcher of root. On failure it stops what it started.
func (d *Daemon) startTree(ctx context.Context, root, mountpoint, spec string, eo enrich.Options) (err error) {
	t := &tree{name: root}
	if mountpoint != "" {
		t.name = mountpoint
	}
	brCtx, stopBridge := context.WithCancel(context.Background()) // outlives ctx: flushes at stop
	t.stopBridge = stopBridge
	srcCtx, stopWatcher := context.WithCancel(ctx)
	t.stopWatcher = stopWatcher
	defer func() {
		if err != nil {
			t.stop(d)
		}
	}()

	// The enrichment layer: ignore rules, git operations, content facts.
	eo.Next, eo.Root, eo.Logger = d.manager, root, d.log
	if mountpoint != "" {
		eo.Root, eo.Backing = mountpoint, root // read files through the backing tree only
	}
	sum := sha256.Sum256([]byte(t.name))
	eo.Dir = filepath.Join(d.cfg.Data, "enrich", hex.EncodeToString(sum[:8]))
	if t.enrich, err = enrich.New(eo); err != nil {
		return fmt.Errorf("enrich %s: %w", t.name, err)
	}
	d.registerTree("enrich", t.enrich.Collector(t.name))

	opts := bridge.Options{Publisher: t.enrich, Source: d.cfg.Source, SelfPID: int32(os.Getpid()), Window: d.cfg.BridgeWindow, Logger: d.log}
	if mountpoint != "" {
		opts.Backing, opts.Mount, opts.NoPassthrough = root, mountpoint, !d.cfg.FusePassthrough
	}
	t.bridge, err = bridge.New(opts)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", t.name, err)
	}
	d.registerTree("bridge", t.bridge.Collector(t.name))
	t.bridging.Go(func() {
		if err := t.bridge.Run(brCtx); err != nil && !errors.Is(err, context.Canceled) {
			d.fail(fmt.Errorf("bridge %s: %w", t.name, err))
		}
	})

	if mountpoint != "" {
		fo := fusefs.Options{Backing: root, Mountpoint: mountpoint, CreateMountpoint: true, Procs: d.procs,
			Sink: t.bridge.FUSE(), Passthrough: d.cfg.FusePassthrough, Logger: d.log}
		if d.guard != nil { // a nil *guard.Guard in the interface would not be nil
			fo.Guard = d.guard
		}
		t.mount, err = fusefs.Mount(fo)
		if err != nil {
			return fmt.Errorf("mount %s: %w", spec, err)
		}
		t.bridge.SetInvalidator(t.mount)
		d.registerTree("fuse", t.mount.Collector())
		d.log.Info("FUSE boundary", "backing", root, "mount", mountpoint, "passthrough", t.mount.Passthrough())
	}

	t.watcher, err = fanotify.New(fanotify.Options{Root: root, Sink: t.bridge.Kernel(), Logger: d.log, Shadows: mountpoint != "", Procs: d.procs})
	if err != nil {
		return fmt.Errorf("watch %s: %w", root, err)
	}
	d.log.Info("kernel boundary", "root", root, "mode", t.watcher.Mode())
	d.registerTree("kernel", t.watcher.Collector())
	w := t.watcher
	t.watching.Go(func() {
		if err := w.Run(srcCtx); err != nil && !errors.Is(err, context.Canceled) {
			d.fail(fmt.Errorf("watch %s: %w", root, err))
		}
		_ = w.Close()
	})
	d.trees = append(d.trees, t)
	return nil
}

// stop stops the boundaries (the watcher, then the mount), then lets the
// bridge publish what it holds.
func (t *tree) stop(d *Daemon) {
	t.stopWatcher()
	if t.mount != nil {
		if err := t.mount.Unmount(); err != nil {
			d.log.Warn("unmount", "mount", t.mount.Mountpoint(), "err", err)
		}
	}
	t.watching.Wait()
	t.stopBridge()
	t.bridging.Wait()
	if t.enrich != nil { // after the bridge: Close publishes git operations in progress
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := t.enrich.Close(ctx); err != nil {
			d.log.Warn("enrich: close", "tree", t.name, "err", err)
		}
		cancel()
	}
}

// register adds a collector; a failure costs a metric, never the daemon.
func (d *Daemon) register(c prometheus.Collector) {
	if err := d.reg.Register(c); err != nil {
		d.log.Warn("metrics: cannot register collector", "err", err)
	}
}

// registerTree adds a tree's collector of one kind (its bridge, kernel
// watcher, FUSE mount or enrichment). The trees' collectors of a kind
// describe the same series — the tree is a label whose value they fill
// in — so the registry would refuse all but the first: they are gathered
// into one collector per kind, registered with the first tree's.
func (d *Daemon) registerTree(kind string, c prometheus.Collector) {
	if g := d.perTree[kind]; g != nil {
		g.add(c)
		return
	}
	g := &treeCollectors{cols: []prometheus.Collector{c}}
	if d.perTree == nil {
		d.perTree = map[string]*treeCollectors{}
	}
	d.perTree[kind] = g
	d.register(g)
}

// treeCollectors is the collectors of one kind, one per tree.
type treeCollectors struct {
	mu   sync.Mutex
	cols []prometheus.Collector
}

func (g *treeCollectors) add(c prometheus.Collector) {
	g.mu.Lock()
	g.cols = append(g.cols, c)
	g.mu.Unlock()
}

// Describe describes the first tree's series: every tree's are the same.
func (g *treeCollectors) Describe(ch chan<- *prometheus.Desc) {
	g.mu.Lock()
	first := g.cols[0]
	g.mu.Unlock()
	first.Describe(ch)
}

// Collect collects every tree's series.
func (g *treeCollectors) Collect(ch chan<- prometheus.Metric) {
	g.mu.Lock()
	cols := slices.Clone(g.cols)
	g.mu.Unlock()
	for _, c := range cols {
		c.Collect(ch)
	}
}

// captureStatus is the "captures" section of GET /v1/status: each tree
// with its events, overflows, losses and the share of boundary ops that
// the bridge merged away (shadows and repeats). The trees are all started
// before the API is, and never change while it runs.
func (d *Daemon) captureStatus() any {
	out := make([]map[string]any, 0, len(d.trees))
	for _, t := range d.trees {
		ws, bs := t.watcher.Stats(), t.bridge.Stats()
		merged := 0.0
		if seen := bs.SeenKernel + bs.SeenFUSE; seen > 0 {
			merged = 1 - float64(bs.Emitted)/float64(seen)
		}
		out = append(out, map[string]any{"tree": t.name, "mount": t.mount != nil, "mode": ws.Mode,
			"events": bs.Emitted, "overflows": ws.Overflows, "lost": ws.LostRecords + bs.Lost,
			"merged_ratio": merged})
	}
	return out
}
