package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/semprop/semprop/internal/bridge"
	"github.com/semprop/semprop/internal/capture/fanotify"
	"github.com/semprop/semprop/internal/capture/fusefs"
	"github.com/semprop/semprop/internal/config"
	"github.com/semprop/semprop/internal/metrics"
	"github.com/semprop/semprop/internal/propagate"
)

// captures owns the boundaries and bridges of a running daemon.
type captures struct {
	failed chan error // first failure of a boundary

	stopSources context.CancelFunc // watchers
	stopBridges context.CancelFunc // bridges: after the sources, so they flush everything
	mounts      []*fusefs.FS
	sources     sync.WaitGroup
	bridges     sync.WaitGroup
}

// startCapture starts a kernel watcher per --watch directory and a FUSE
// mount plus a kernel watcher of its backing tree per --mount, each behind a
// bridge that publishes to m. Cancelling ctx is not needed: wait stops
// everything in order.
func startCapture(ctx context.Context, cfg *config.Config, m *propagate.Manager, source string, log *slog.Logger, reg prometheus.Registerer) (*captures, error) {
	c := &captures{failed: make(chan error, 1)}
	srcCtx, stopSources := context.WithCancel(ctx)
	brCtx, stopBridges := context.WithCancel(context.Background())
	c.stopSources, c.stopBridges = stopSources, stopBridges
	data, _ := filepath.Abs(cfg.Data)
	if real, err := filepath.EvalSymlinks(data); err == nil {
		data = real
	}
	self := int32(os.Getpid())

	fail := func(err error) {
		select {
		case c.failed <- err:
		default:
		}
	}
	startWatcher := func(root string, br *bridge.Bridge, shadows bool) error {
		w, err := fanotify.New(fanotify.Options{Root: root, Sink: br.Kernel(), Logger: log, Shadows: shadows})
		if err != nil {
			return fmt.Errorf("watch %s: %w", root, err)
		}
		log.Info("kernel boundary", "root", root, "mode", w.Mode())
		register(reg, log, metrics.NewStatsCollector("kernel", prometheus.Labels{"root": root}, func() any { return w.Stats() }, "Watches"))
		c.sources.Go(func() {
			if err := w.Run(srcCtx); err != nil && !errors.Is(err, context.Canceled) {
				fail(fmt.Errorf("watch %s: %w", root, err))
			}
			_ = w.Close()
		})
		return nil
	}
	startBridge := func(name string, opts bridge.Options) (*bridge.Bridge, error) {
		opts.Publisher, opts.Source, opts.SelfPID, opts.Window, opts.Logger = m, source, self, cfg.BridgeWindow, log
		br, err := bridge.New(opts)
		if err != nil {
			return nil, err
		}
		register(reg, log, metrics.NewStatsCollector("bridge", prometheus.Labels{"tree": name}, func() any { return br.Stats() }, "Pending", "Queued"))
		c.bridges.Go(func() {
			if err := br.Run(brCtx); err != nil && !errors.Is(err, context.Canceled) {
				fail(fmt.Errorf("bridge: %w", err))
			}
		})
		return br, nil
	}

	for _, dir := range cfg.Watch {
		root, err := realPath(dir)
		if err != nil {
			c.wait()
			return nil, err
		}
		if within(data, root) {
			c.wait()
			return nil, fmt.Errorf("watch %s: the data directory %s is inside it; the journal's own writes would be captured as events (a feedback loop): use --data outside the watched tree", root, data)
		}
		br, err := startBridge(root, bridge.Options{})
		if err == nil {
			err = startWatcher(root, br, false)
		}
		if err != nil {
			c.wait()
			return nil, err
		}
	}
	if len(cfg.Mount) > 0 {
		fuseProcs(log)
		fuseGC(log)
	}
	for _, spec := range cfg.Mount {
		b, mp, _ := strings.Cut(spec, ":")
		backing, err1 := realPath(b) // the kernel reports paths with symlinks resolved
		mountpoint, err2 := filepath.Abs(mp)
		if err := errors.Join(err1, err2); err != nil {
			c.wait()
			return nil, err
		}
		if within(data, backing) || within(data, mountpoint) {
			c.wait()
			return nil, fmt.Errorf("mount %s: the data directory %s is inside it; use --data outside the backing tree and the mount point", spec, data)
		}
		if err := os.MkdirAll(mountpoint, 0o755); err != nil {
			c.wait()
			return nil, fmt.Errorf("mount %s: %w", spec, err)
		}
		inv := &lateInvalidator{}
		br, err := startBridge(mountpoint, bridge.Options{Backing: backing, Mount: mountpoint, Invalidator: inv, NoPassthrough: !cfg.FusePassthrough})
		if err != nil {
			c.wait()
			return nil, err
		}
		fsys, err := fusefs.Mount(fusefs.Options{Backing: backing, Mountpoint: mountpoint, Sink: br.FUSE(), Passthrough: cfg.FusePassthrough, Logger: log})
		if err != nil {
			c.wait()
			return nil, fmt.Errorf("mount %s: %w", spec, err)
		}
		inv.set(fsys)
		register(reg, log, metrics.NewStatsCollector("fuse", prometheus.Labels{"mount": mountpoint}, func() any { return fsys.Stats() }))
		c.mounts = append(c.mounts, fsys)
		log.Info("FUSE boundary", "backing", backing, "mount", mountpoint, "passthrough", fsys.Passthrough())
		if err := startWatcher(backing, br, true); err != nil {
			c.wait()
			return nil, err
		}
	}
	return c, nil
}

// register adds a collector; a failure costs a metric, never the daemon.
func register(reg prometheus.Registerer, log *slog.Logger, c prometheus.Collector) {
	if err := reg.Register(c); err != nil {
		log.Warn("metrics: cannot register collector", "err", err)
	}
}

// wait stops the boundaries, then lets the bridges publish what they hold.
func (c *captures) wait() {
	c.stopSources()
	for _, fsys := range c.mounts {
		if err := fsys.Unmount(); err != nil {
			slog.Warn("unmount", "mount", fsys.Mountpoint(), "err", err)
		}
	}
	c.sources.Wait()
	c.stopBridges()
	c.bridges.Wait()
}

// realPath is the absolute path of dir with symlinks resolved.
func realPath(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(abs)
}

func within(path, root string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// lateInvalidator lets the bridge exist before the mount it invalidates
// (the mount needs the bridge's sink first).
type lateInvalidator struct {
	mu sync.RWMutex
	fs *fusefs.FS
}

func (l *lateInvalidator) set(fs *fusefs.FS) { l.mu.Lock(); l.fs = fs; l.mu.Unlock() }

func (l *lateInvalidator) get() *fusefs.FS { l.mu.RLock(); defer l.mu.RUnlock(); return l.fs }

func (l *lateInvalidator) InvalidateContent(rel string) {
	if fs := l.get(); fs != nil {
		fs.InvalidateContent(rel)
	}
}

func (l *lateInvalidator) InvalidateEntry(dir, name string) {
	if fs := l.get(); fs != nil {
		fs.InvalidateEntry(dir, name)
	}
}

func (l *lateInvalidator) InvalidateDelete(dir, name string) {
	if fs := l.get(); fs != nil {
		fs.InvalidateDelete(dir, name)
	}
}

// fuseProcs gives a daemon that serves FUSE mounts more Ps than CPUs
// (4 per CPU, unless GOMAXPROCS is set in the environment). A FUSE server's
// goroutines spend their lives in blocking reads of /dev/fuse and in the
// backing file system's syscalls; each needs a P again the moment its
// syscall returns, and with one P per CPU it often finds them all held —
// by the capture pipeline (kernel reader, bridge, journal) or by a
// goroutine still counted in a syscall — and waits for the runtime to hand
// one over, on the critical path of the caller's operation. With spare Ps
// the operating system's scheduler decides instead. Measured on 2 CPUs
// (copy of GOROOT/src through the mount, 13 alternating pairs): 10% less
// wall time (docs/architecture.md).
func fuseProcs(log *slog.Logger) {
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	if n := 4 * runtime.NumCPU(); runtime.GOMAXPROCS(0) < n {
		runtime.GOMAXPROCS(n)
		log.Info("FUSE: more Ps than CPUs for the mount's server", "gomaxprocs", n)
	}
}

// fuseGCPercent is the garbage collector's target for a daemon that serves
// FUSE mounts. Every operation through a mount allocates in the capture
// pipeline (an op per boundary, an event, its journal record), while the
// live heap stays small (about 10 MB): at the default of 100 a copy of
// GOROOT/src into the mount ran 23 collections, each of which slows the
// FUSE handlers on the caller's critical path (write barriers, assists,
// stop-the-world phases). At 400 the heap grows to about five times the
// live heap before a collection instead of twice, some 50 MB, and the copy
// runs 4.
const fuseGCPercent = 400

// fuseGC sets fuseGCPercent unless GOGC is set in the environment.
func fuseGC(log *slog.Logger) {
	if os.Getenv("GOGC") != "" {
		return
	}
	debug.SetGCPercent(fuseGCPercent)
	log.Info("FUSE: garbage collector target raised for the mount's server", "gogc", fuseGCPercent)
}
