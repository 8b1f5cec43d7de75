package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/api"
	"github.com/semprop/semprop/internal/auth"
	"github.com/semprop/semprop/internal/config"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/metrics"
	"github.com/semprop/semprop/internal/propagate"
)

type runFlags struct {
	config      string
	data        string
	listen      string
	watch       []string
	mount       []string
	fsync       string
	fsyncEvery  time.Duration
	passthrough string
	logLevel    string
	tlsCert     string
	tlsKey      string
	tlsClientCA string
	insecure    bool
	cluster     clusterFlags
}

func newRunCmd() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the semprop daemon",
		Long: `Run the daemon: open the journal, serve the HTTP API, and capture file-system
events from --watch directories (kernel boundary) and --mount BACKING:MOUNTPOINT
FUSE mounts (FUSE and kernel boundaries, bridged).

With no flags it runs on the embedded defaults: data in ./semprop-data, HTTP on
127.0.0.1:7878, fsync always. A --config YAML file overrides the defaults
(see 'semprop run --print-defaults'); flags override the file.

SIGINT or SIGTERM shut down gracefully: intake stops, streams end, what is
buffered is flushed and fsynced, and the process exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pd, _ := cmd.Flags().GetBool("print-defaults"); pd {
				_, err := cmd.OutOrStdout().Write(config.Defaults())
				return err
			}
			cfg, err := f.load(cmd)
			if err != nil {
				return err
			}
			if err := f.cluster.validate(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDaemon(ctx, cfg, &f.cluster, cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "YAML configuration file (overrides the embedded defaults)")
	fl.StringVar(&f.data, "data", "", "data directory for the journal and consumer cursors (default ./semprop-data)")
	fl.StringVar(&f.listen, "listen", "", "HTTP API address (default 127.0.0.1:7878)")
	fl.StringArrayVar(&f.watch, "watch", nil, "watch `DIR` with the kernel boundary (repeatable)")
	fl.StringArrayVar(&f.mount, "mount", nil, "mount a FUSE loopback of BACKING at MOUNTPOINT, bridged with the kernel boundary (`BACKING:MOUNTPOINT`, repeatable)")
	fl.StringVar(&f.fsync, "fsync", "", "journal durability: always (ack after fsync, group commit), interval (ack after write, fsync every --fsync-interval), never (default always)")
	fl.DurationVar(&f.fsyncEvery, "fsync-interval", 0, "fsync period for --fsync interval (default 10ms)")
	fl.StringVar(&f.passthrough, "fuse-passthrough", "", "FUSE passthrough for file data: on (fast; writes seen by the kernel boundary) or off (default on)")
	fl.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (default info)")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "serve the API over TLS with this certificate (PEM)")
	fl.StringVar(&f.tlsKey, "tls-key", "", "private key of --tls-cert (PEM)")
	fl.StringVar(&f.tlsClientCA, "tls-client-ca", "", "require client certificates signed by this CA (mutual TLS)")
	fl.BoolVar(&f.insecure, "insecure", false, "allow a non-loopback --listen address without tokens (anyone who can connect may do anything)")
	fl.Bool("print-defaults", false, "print the embedded default configuration and exit")
	f.cluster.register(fl)
	return cmd
}

// load reads the config and applies the flags that were given.
func (f *runFlags) load(cmd *cobra.Command) (*config.Config, error) {
	cfg, err := config.Load(f.config)
	if err != nil {
		return nil, err
	}
	fl := cmd.Flags()
	if fl.Changed("data") {
		cfg.Data = f.data
	}
	if fl.Changed("listen") {
		cfg.Listen = f.listen
	}
	if fl.Changed("watch") {
		cfg.Watch = f.watch
	}
	if fl.Changed("mount") {
		cfg.Mount = f.mount
	}
	if fl.Changed("fsync") {
		cfg.Fsync = f.fsync
	}
	if fl.Changed("fsync-interval") {
		cfg.FsyncInterval = f.fsyncEvery
	}
	if fl.Changed("fuse-passthrough") {
		switch f.passthrough {
		case "on", "true":
			cfg.FusePassthrough = true
		case "off", "false":
			cfg.FusePassthrough = false
		default:
			return nil, fmt.Errorf("--fuse-passthrough: %q: want on or off", f.passthrough)
		}
	}
	if fl.Changed("log-level") {
		cfg.LogLevel = f.logLevel
	}
	if fl.Changed("tls-cert") {
		cfg.TLS.Cert = f.tlsCert
	}
	if fl.Changed("tls-key") {
		cfg.TLS.Key = f.tlsKey
	}
	if fl.Changed("tls-client-ca") {
		cfg.TLS.ClientCA = f.tlsClientCA
	}
	if fl.Changed("insecure") {
		cfg.Insecure = f.insecure
	}
	return cfg, cfg.Validate()
}

func newLogger(w interface{ Write([]byte) (int, error) }, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

// runDaemon runs until ctx is done, then shuts down in order: streams and
// intake, capture, the manager, the journal.
func runDaemon(ctx context.Context, cfg *config.Config, cf *clusterFlags, logw interface{ Write([]byte) (int, error) }) error {
	log := newLogger(logw, cfg.LogLevel)
	slog.SetDefault(log)
	policy, err := journal.ParseFsyncPolicy(cfg.Fsync)
	if err != nil {
		return err
	}
	authn, err := auth.New(cfg.Auth.Tokens)
	if err != nil {
		return err
	}
	if !authn.Enabled() && !cfg.Insecure && !loopback(cfg.Listen) {
		return fmt.Errorf("refusing to listen on %s without tokens: configure auth.tokens, listen on loopback, or pass --insecure", cfg.Listen)
	}
	tlsConf, err := serverTLS(cfg.TLS)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	defer ln.Close()

	// Serve from the start: until the journal is recovered and the API is
	// up, /healthz answers and everything else is 503 with the reason.
	var handler atomic.Pointer[http.Handler]
	hs := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := handler.Load(); h != nil {
			(*h).ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/healthz" {
			w.Write([]byte(`{"status":"ok"}` + "\n"))
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"ready":false,"reason":"recovering the journal","error":"not ready: recovering the journal"}` + "\n"))
	})}
	var wg sync.WaitGroup
	serveErr := make(chan error, 1)
	wg.Go(func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			serveErr <- err
		}
	})
	defer func() {
		_ = hs.Close() // a no-op after a graceful Shutdown
		wg.Wait()
	}()

	j, err := journal.Open(journal.Options{
		Dir: filepath.Join(cfg.Data, "journal"), SegmentSize: int64(cfg.SegmentSize), Fsync: policy,
		FsyncInterval: cfg.FsyncInterval, RetentionBytes: int64(cfg.Retention.Bytes), RetentionAge: cfg.Retention.Age,
		Logger: log,
	})
	if err != nil {
		return fmt.Errorf("refusing to run: %w", err)
	}
	defer func() {
		if err := j.Close(); err != nil {
			log.Error("close journal", "err", err)
		}
	}()
	host, _ := os.Hostname()
	source := "semprop://" + host
	clu, err := newClusterRun(cf, cfg, j, ln.Addr(), tlsConf != nil, log)
	if err != nil {
		return err
	}
	popts := propagate.Options{Journal: j, Dir: cfg.Data, Source: source + "/user", Logger: log}
	clu.apply(&popts)
	m, err := propagate.New(popts)
	if err != nil {
		return err
	}
	defer m.Close()
	defer clu.close(log)

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		metrics.NewManagerCollector(m),
		metrics.NewStatsCollector("journal", nil, func() any { return j.Stats() },
			"Segments", "Bytes", "FirstSeq", "LastSeq", "DurableSeq", "Truncated"),
	)
	srv := api.New(api.Options{
		Manager: m, Logger: log, MaxBody: int64(cfg.Limits.MaxBody), MaxBatch: cfg.Limits.MaxBatch,
		Limits: event.Limits{MaxData: int(cfg.Limits.MaxData)}, Registerer: reg, Auth: authn,
	})
	srv.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	// Profiles for operators (admin only when tokens are configured).
	srv.Handle("GET /debug/pprof/", http.HandlerFunc(pprof.Index))
	srv.Handle("GET /debug/pprof/profile", http.HandlerFunc(pprof.Profile))
	clu.mount(srv, reg, m)
	var apiHandler http.Handler = srv
	handler.Store(&apiHandler)

	capCtx, stopCapture := context.WithCancel(context.Background())
	captures, err := startCapture(capCtx, cfg, m, source, log, reg)
	if err != nil {
		stopCapture()
		srv.Close()
		_ = hs.Close() // before the journal closes
		return err
	}
	clu.setReady(ctx, srv)
	log.Info("semprop running", "listen", ln.Addr().String(), "tls", tlsConf != nil, "tokens", len(cfg.Auth.Tokens), "data", cfg.Data, "fsync", cfg.Fsync,
		"watch", strings.Join(cfg.Watch, ","), "mount", strings.Join(cfg.Mount, ","))

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case runErr = <-serveErr:
		log.Error("http server failed", "err", runErr)
	case runErr = <-captures.failed:
		log.Error("capture failed", "err", runErr)
	}
	clu.stopReady()
	srv.Close() // streams end, ingest answers 503
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := hs.Shutdown(shutCtx); err != nil {
		log.Warn("http shutdown", "err", err)
	}
	cancel()
	stopCapture()
	captures.wait()
	log.Info("stopped", "last_seq", j.LastSeq())
	return runErr
}

// loopback reports whether addr (HOST:PORT) only listens on loopback.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// serverTLS builds the API's TLS configuration; nil without a certificate.
func serverTLS(c config.TLS) (*tls.Config, error) {
	if c.Cert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.ClientCA != "" {
		pem, err := os.ReadFile(c.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("tls: client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: client CA %s: no certificates found", c.ClientCA)
		}
		conf.ClientCAs = pool
		conf.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return conf, nil
}
