package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/action"
	"github.com/semprop/semprop/internal/analytics"
	"github.com/semprop/semprop/internal/api"
	"github.com/semprop/semprop/internal/audit"
	"github.com/semprop/semprop/internal/capture/procinfo"
	"github.com/semprop/semprop/internal/filter"
	"github.com/semprop/semprop/internal/guard"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/monitor"
	"github.com/semprop/semprop/internal/output"
	"github.com/semprop/semprop/internal/propagate"
	"github.com/semprop/semprop/internal/replica"
	"github.com/semprop/semprop/internal/rules"
)

// Daemon is one running semprop process. Its methods are not safe for
// concurrent use: Run is called once.
type Daemon struct {
	cfg Config
	log *slog.Logger
	reg *prometheus.Registry

	front   *front // the listener and its early answers
	journal *journal.Journal
	cluster *clusterRun // nil without a cluster
	manager *propagate.Manager
	rules   *rules.Engine    // nil without rule files
	actions *action.Executor // nil without rule files
	procs   *procinfo.Cache  // process identities shared by the trees; nil without
	trees   []*tree
	// perTree gathers each kind of per-tree collector (see registerTree).
	perTree map[string]*treeCollectors
	api     *api.Server

	analytics *analytics.Engine // nil when off
	replica   *replica.Replica  // nil without sync
	outputs   *output.Outputs   // nil without outputs
	health    *monitor.Health   // every component's check; /readyz follows it
	guard     *guard.Guard      // nil when off, or without mounts and rules
	snapshots *action.Store     // DATA/snapshots, opened by the first user
	pruner    *snapshotPruner   // nil: snapshots not pruned
	monitor   *monitor.Monitor
	onAPI     []func(*api.Server) // components' routes, registered by startAPI

	failed chan error    // first failure of a running component
	ready  chan struct{} // closed once every component has started
	made   []string      // directories this start created, removed if it fails
}

// step starts one component and returns what stops it.
type step struct {
	name  string
	start func(ctx context.Context) (stop func(), err error)
}

// steps lists the components in start order; they stop in reverse.
func (d *Daemon) steps() []step {
	return []step{
		{"listener", d.startFront},
		{"journal", d.startJournal},
		{"manager", d.startManager},
		{"guard", d.startGuard},
		{"rules", d.startRules},
		{"actions", d.startActions},
		{"snapshots", d.startSnapshots},
		{"analytics", d.startAnalytics},
		{"ui", d.startUI},
		{"outputs", d.startOutputs},
		{"sync", d.startSync},
		{"capture", d.startCapture},
		{"monitor", d.startMonitor},
		{"api", d.startAPI},
	}
}

// New returns a Daemon for cfg, logging to log. It starts nothing.
func New(cfg *Config, log *slog.Logger) *Daemon {
	return &Daemon{cfg: *cfg, log: log, reg: prometheus.NewRegistry(), failed: make(chan error, 1), ready: make(chan struct{})}
}

// Started is closed once Run has started every component; Addr is valid
// from then on.
func (d *Daemon) Started() <-chan struct{} { return d.ready }

// Addr is the address the API listens on (after Started).
func (d *Daemon) Addr() string { return d.front.addr() }

// SetCluster makes the daemon a cluster node (see ClusterConfig).
func (d *Daemon) SetCluster(c *ClusterConfig) { d.cluster = newClusterRun(c) }

// Run starts every component, serves until ctx is done or a component
// fails, and then stops them in reverse order. It returns the failure, or
// nil after a shutdown asked for by ctx.
func (d *Daemon) Run(ctx context.Context) (err error) {
	tuneProcess(&d.cfg, d.log)
	var stops []func()
	unwind := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	for _, s := range d.steps() {
		stop, err := s.start(ctx)
		if err != nil {
			d.log.Debug("start failed; stopping what started", "component", s.name, "err", err)
			unwind()
			d.removeMade()
			return err
		}
		d.log.Debug("started", "component", s.name)
		if stop != nil {
			stops = append(stops, stop)
		}
	}
	d.setReady(ctx)
	close(d.ready)
	d.log.Info("semprop running", "listen", d.front.addr(), "tls", d.cfg.TLS != nil, "tokens", d.cfg.Tokens,
		"data", d.cfg.Data, "fsync", d.cfg.Fsync, "watch", len(d.cfg.Watches), "mount", len(d.cfg.Mounts),
		"cluster", d.cluster != nil)
	select {
	case <-ctx.Done():
		d.log.Info("shutting down")
	case err = <-d.failed:
		d.log.Error("stopping after a failure", "err", err)
	}
	d.stopReady()
	unwind()
	d.log.Info("stopped", "last_seq", d.journal.LastSeq())
	return err
}

// fail reports a running component's failure; the first one stops Run.
func (d *Daemon) fail(err error) {
	select {
	case d.failed <- err:
	default:
	}
}

// mkdirs creates dir (and parents), remembering the topmost directory it
// created so that a failed start removes it again.
func (d *Daemon) mkdirs(dir string) error {
	top := ""
	for p := dir; ; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil || p == filepath.Dir(p) {
			break
		}
		top = p
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if top != "" {
		d.log.Info("created directory", "dir", top)
		d.made = append(d.made, top)
	}
	return nil
}

// removeMade removes the directories this start created.
func (d *Daemon) removeMade() {
	for i := len(d.made) - 1; i >= 0; i-- {
		if err := os.RemoveAll(d.made[i]); err != nil {
			d.log.Warn("cannot remove what this start created", "dir", d.made[i], "err", err)
		}
	}
}

// front is the HTTP listener, serving from the start: /healthz answers,
// everything else is 503 with the reason until the API is installed.
type front struct {
	ln net.Listener
	hs *http.Server

	mu      sync.RWMutex
	handler http.Handler
	reason  string
	wg      sync.WaitGroup
}

func (f *front) addr() string { return f.ln.Addr().String() }

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.RLock()
	h, reason := f.handler, f.reason
	f.mu.RUnlock()
	if h != nil {
		h.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if r.URL.Path == "/healthz" {
		w.Write([]byte(`{"status":"ok"}` + "\n"))
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintf(w, `{"ready":false,"reason":%q,"error":"not ready: %s"}`+"\n", reason, reason)
}

func (f *front) set(h http.Handler, reason string) {
	f.mu.Lock()
	f.handler, f.reason = h, reason
	f.mu.Unlock()
}

func (d *Daemon) startFront(context.Context) (func(), error) {
	ln, err := net.Listen("tcp", d.cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", d.cfg.Listen, err)
	}
	f := &front{ln: ln, reason: "recovering the journal"}
	f.hs = newHTTPServer(f, d.cfg, d.log)
	// The connection cap counts TLS handshakes too: it wraps the raw
	// listener. Connections beyond it wait in the kernel's queue and use
	// no descriptor (capture must never run out of them).
	ln = api.LimitListener(ln, d.cfg.HTTP.MaxConns)
	if d.cfg.TLS != nil {
		ln = tlsListener(ln, d.cfg.TLS)
	}
	f.wg.Go(func() {
		if err := f.hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.fail(fmt.Errorf("http server: %w", err))
		}
	})
	d.front = f
	return func() {
		_ = f.hs.Close() // a no-op after the API's graceful shutdown
		f.wg.Wait()
	}, nil
}

func (d *Daemon) startJournal(context.Context) (func(), error) {
	dir := filepath.Join(d.cfg.Data, "journal")
	if err := d.mkdirs(dir); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	fsync := d.cfg.Fsync
	if d.cluster != nil && fsync == journal.FsyncAlways {
		// In a cluster the Raft log, fsynced on every append on a quorum,
		// is the durable copy of an acknowledged event; the journal is
		// derived from it, fsynced every interval and before each Raft
		// snapshot (the log is compacted only behind a synced journal).
		fsync = journal.FsyncInterval
	}
	j, err := journal.Open(journal.Options{
		Dir: dir, SegmentSize: d.cfg.SegmentSize, Fsync: fsync, FsyncInterval: d.cfg.FsyncInterval,
		RetentionBytes: d.cfg.RetentionBytes, RetentionAge: d.cfg.RetentionAge, Logger: d.log,
	})
	if err != nil {
		return nil, fmt.Errorf("refusing to run: %w", err)
	}
	d.journal = j
	d.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		j.Collector(),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "semprop_filter_eval_errors_total",
			Help: "Filter expression evaluations that failed (counted as no match)."},
			func() float64 { return float64(filter.EvalErrors()) }),
	)
	return func() {
		if err := j.Close(); err != nil {
			d.log.Error("close journal", "err", err)
		}
	}, nil
}

func (d *Daemon) startManager(context.Context) (func(), error) {
	popts := propagate.Options{Journal: d.journal, Dir: d.cfg.Data, Source: d.cfg.Source + "/user", Logger: d.log, Dedup: d.cfg.Dedup}
	if err := d.cluster.prepare(&d.cfg, d.journal, d.front.ln.Addr(), d.log, &popts); err != nil {
		return nil, err
	}
	m, err := propagate.New(popts)
	if err != nil {
		return nil, err
	}
	d.manager = m
	d.reg.MustRegister(m.Collector())
	return func() {
		d.cluster.close(d.log)
		m.Close()
	}, nil
}

func (d *Daemon) startAPI(context.Context) (func(), error) {
	srv := api.New(api.Options{
		Manager: d.manager, Logger: d.log, MaxBody: d.cfg.MaxBody, MaxBatch: d.cfg.MaxBatch,
		Limits: event.Limits{MaxData: d.cfg.MaxData}, Registerer: d.reg, Auth: d.cfg.Auth,
		HTTP: d.cfg.HTTP, AllowedHosts: d.cfg.AllowedHosts, AllowedOrigins: d.cfg.AllowedOrigins,
		Health: d.health.Ready,
	})
	srv.Handle("GET /metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{Registry: d.reg}))
	// Profiles for operators (admin only when tokens are configured).
	srv.Handle("GET /debug/pprof/", http.HandlerFunc(pprof.Index))
	srv.Handle("GET /debug/pprof/profile", http.HandlerFunc(pprof.Profile))
	srv.AddStatus("captures", d.captureStatus)
	if d.cluster != nil {
		srv.AddStatus("cluster", func() any { return d.cluster.node.Status() })
	}
	d.cluster.mount(srv, d.reg, d.manager)
	if d.rules != nil {
		h := d.rulesHandler()
		srv.Handle("GET /v1/rules", h)
		srv.Handle("POST /v1/rules/reload", h)
		srv.Handle("POST /v1/rules/{name}/enable", h)
		srv.Handle("POST /v1/rules/{name}/disable", h)
		srv.Handle("GET /v1/audit", audit.Handler(filepath.Join(d.cfg.Data, "audit")))
		srv.AddStatus("actions", func() any { return d.actions.Stats() })
	}
	for _, fn := range d.onAPI {
		fn(srv)
	}
	d.api = srv
	// Long requests of other components (the analytics live feed) end
	// when the daemon stops, like the API's own streams, so that the
	// HTTP shutdown does not wait for them.
	stopping, stopRequests := context.WithCancel(context.Background())
	d.front.set(endOnStop(srv, stopping), "")
	return func() {
		stopRequests()
		srv.Close() // streams end, ingest answers 503
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := d.front.hs.Shutdown(ctx); err != nil {
			d.log.Warn("http shutdown", "err", err)
		}
	}, nil
}

// endOnStop serves h with request contexts that are also canceled when
// stop is.
func endOnStop(h http.Handler, stop context.Context) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		unhook := context.AfterFunc(stop, cancel)
		defer unhook()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// setReady marks the API ready (following the cluster node's readiness in
// a cluster).
func (d *Daemon) setReady(ctx context.Context) { d.cluster.setReady(ctx, d.api) }

func (d *Daemon) stopReady() { d.cluster.stopReady() }
