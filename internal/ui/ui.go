// Package ui serves semprop's live dashboard: a single page at /ui/ whose
// static assets (HTML, CSS, JavaScript and the vendored uPlot chart
// library) are embedded in the binary with go:embed, so the page loads
// nothing from elsewhere at run time.
//
// The assets hold no data: the page asks the API for everything it shows,
// with the token the user types (kept in the browser's sessionStorage and
// sent as a Bearer header; none is needed when no tokens are configured),
// so what a token may see on the dashboard is exactly what it may see on
// the API. Live data arrives over Server-Sent Events read with fetch()
// (EventSource cannot set headers) in a Web Worker, which parses and
// aggregates the stream and hands the page the live tail as soon as it is
// read (at most one message per frame) and the aggregates at most every
// 50 ms (20 Hz); the page draws at most once per animation frame, new
// tail rows in a frame without the charts. See docs/dashboard.md for the
// panels and the measured latency.
//
// The routes are public (api.AccessPublic), and every answer carries a
// Content-Security-Policy that allows scripts, styles, workers and
// connections to the server's own origin only, and no framing.
package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/semprop/semprop/internal/api"
)

// Errors of Config.Validate.
var (
	ErrPoll = errors.New("ui: poll must be between 250ms and 1m")
)

//go:embed assets
var assets embed.FS

// Config is the "ui" section of the daemon's configuration.
type Config struct {
	// Enabled serves the dashboard at /ui/ (default true).
	Enabled bool `yaml:"enabled"`
	// Poll is how often the page asks for the status panels (capture
	// health, lag, cluster, rules): 250ms to 1m, default 2s. Live
	// panels follow the event stream and do not poll.
	Poll time.Duration `yaml:"poll"`
}

// DefaultConfig returns the defaults: enabled, polling every 2s.
func DefaultConfig() Config { return Config{Enabled: true, Poll: 2 * time.Second} }

// Validate reports a setting out of range; a zero Poll means the default.
func (c Config) Validate() error {
	if c.Poll != 0 && (c.Poll < 250*time.Millisecond || c.Poll > time.Minute) {
		return fmt.Errorf("%w (got %s)", ErrPoll, c.Poll)
	}
	return nil
}

// Options configure a UI.
type Options struct {
	Config Config
	// Logger receives the UI's rare complaints; nil discards them.
	Logger *slog.Logger
}

// UI serves the dashboard's files. It has no goroutines and nothing to
// close; it is safe for concurrent use.
type UI struct {
	log   *slog.Logger
	files map[string]file // by name under assets/, "index.html" included

	served *prometheus.CounterVec
}

// file is one asset, ready to serve.
type file struct {
	body  []byte
	ctype string
	etag  string
}

var _ http.Handler = (*UI)(nil)

// New returns a UI serving the embedded assets, with the poll interval
// of opts.Config written into the page.
func New(opts Options) (*UI, error) {
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	poll := opts.Config.Poll
	if poll == 0 {
		poll = DefaultConfig().Poll
	}
	u := &UI{log: opts.Logger, files: make(map[string]file),
		served: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "semprop_ui_requests_total",
			Help: "Requests for the dashboard's files, by file (page loads are file=\"index.html\").",
		}, []string{"file"})}
	err := fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(p, "assets/")
		if name == "index.html" {
			body = bytes.ReplaceAll(body, []byte("{{POLL_MS}}"), []byte(strconv.FormatInt(poll.Milliseconds(), 10)))
		}
		sum := sha256.Sum256(body)
		ct := mime.TypeByExtension(path.Ext(name))
		if ct == "" {
			ct = "text/plain; charset=utf-8"
		}
		u.files[name] = file{body: body, ctype: ct, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		u.served.WithLabelValues(name)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ui: read assets: %w", err)
	}
	return u, nil
}

// Register serves the dashboard on srv: GET /ui/ and everything under it,
// public (the files hold no data; the page authenticates its API calls).
// Call it before serving.
func (u *UI) Register(srv *api.Server) {
	srv.HandleAccess("GET /ui/", api.AccessPublic, u)
	srv.HandleAccess("GET /ui", api.AccessPublic, http.RedirectHandler("/ui/", http.StatusMovedPermanently))
}

// Collector returns the UI's metrics (requests per file).
func (u *UI) Collector() prometheus.Collector { return u.served }

// csp allows the page's own scripts, styles, worker and API calls, and
// nothing else: no inline scripts, no other origins, no framing.
const csp = "default-src 'none'; script-src 'self'; worker-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// ServeHTTP serves one asset under /ui/ (index.html for /ui/ itself),
// with an ETag, and 404 for anything else.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/ui/")
	if name == "" {
		name = "index.html"
	}
	f, ok := u.files[name]
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	if !ok {
		h.Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, "{\"error\":%q}\n", "no dashboard file "+name)
		return
	}
	u.served.WithLabelValues(name).Inc()
	h.Set("Content-Type", f.ctype)
	h.Set("ETag", f.etag)
	h.Set("Cache-Control", "no-cache") // revalidate: a new binary brings new files
	if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, f.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(f.body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(f.body)
	}
}
