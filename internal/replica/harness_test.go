package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/api"
	"github.com/semprop/semprop/internal/auth"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.DiscardHandler)

// testLogger logs through t when SYNC_LOG is set.
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("SYNC_LOG") == "" {
		return quiet
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// network decides which instances may reach which: a partition blocks
// the requests between two groups, both ways.
type network struct {
	mu      sync.Mutex
	group   map[string]int // instance URL -> partition group; absent: 0
	blocked bool
}

func (n *network) partition(groups ...[]*instance) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.group = map[string]int{}
	for g, is := range groups {
		for _, i := range is {
			n.group[i.url] = g
			n.group[i.name] = g
		}
	}
	n.blocked = true
}

func (n *network) heal() {
	n.mu.Lock()
	n.blocked = false
	n.mu.Unlock()
}

func (n *network) allowed(from, to string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return !n.blocked || n.group[from] == n.group[to]
}

// linkTransport is one instance's view of the network.
type linkTransport struct {
	net  *network
	from string
	next http.RoundTripper
}

var errPartitioned = errors.New("test: partitioned")

func (t *linkTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	to := req.URL.Scheme + "://" + req.URL.Host
	if !t.net.allowed(t.from, to) {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, errPartitioned
	}
	return t.next.RoundTrip(req)
}

// instance is one semprop instance in process: journal, manager, API
// server on 127.0.0.1 and replica, with one tree "docs" at /srv/NAME.
type instance struct {
	name string
	url  string
	root string
	m    *propagate.Manager
	r    *Replica
	hs   *httptest.Server
	stop func()
}

type clusterOpts struct {
	n       int
	auth    *auth.Authenticator // the API's tokens, if any
	config  func(i int, c *Config)
	noStart bool
}

// newInstances starts n instances that all know each other as peers.
func newInstances(t testing.TB, o clusterOpts) ([]*instance, *network) {
	t.Helper()
	nw := &network{}
	is := make([]*instance, o.n)
	handlers := make([]http.Handler, o.n)
	for i := range is {
		name := fmt.Sprintf("n%d", i)
		h := &handlers[i]
		in := &instance{name: name, root: "/srv/" + name}
		// The server side of a partition too: a request that passed the
		// client's check just before the partition is refused on arrival.
		hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if from := r.Header.Get("Semprop-Sync-From"); from != "" && !nw.allowed(from, in.name) {
				http.Error(w, "partitioned", http.StatusServiceUnavailable)
				return
			}
			(*h).ServeHTTP(w, r)
		}))
		in.url, in.hs = "http://"+hs.Listener.Addr().String(), hs
		is[i] = in
	}
	for i, in := range is {
		dir := t.TempDir()
		j, err := journal.Open(journal.Options{Dir: dir + "/journal", Fsync: journal.FsyncNever, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		m, err := propagate.New(propagate.Options{Journal: j, Dir: dir, Source: "semprop://" + in.name, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		cfg := Config{Name: in.name, Advertise: in.url, Interval: 100 * time.Millisecond, Timeout: 10 * time.Second, Checkpoint: time.Hour}
		for _, p := range is {
			if p != in {
				cfg.Peers = append(cfg.Peers, p.url)
			}
		}
		if o.config != nil {
			o.config(i, &cfg)
		}
		root := in.root
		r, err := New(Options{
			Config: cfg, Dir: dir + "/sync",
			Open:      func(from uint64) (Source, error) { return m.Reader(from) },
			Resolve:   func(abs string) (string, string, bool) { return resolveUnder(root, abs) },
			Abs:       func(tree, rel string) (string, bool) { return root + "/" + rel, tree == "docs" },
			Transport: &linkTransport{net: nw, from: in.url, next: http.DefaultTransport},
			Logger:    testLogger(t),
		})
		if err != nil {
			t.Fatal(err)
		}
		srv := api.New(api.Options{Manager: m, Logger: quiet, Auth: o.auth})
		r.Register(srv)
		srv.SetReady(true, "")
		handlers[i] = srv
		in.m, in.r = m, r
		hs := in.hs
		hs.Start()
		in.stop = func() {}
		t.Cleanup(func() {
			in.stop()
			in.hs.Close()
			srv.Close()
			m.Close()
			j.Close()
		})
		if !o.noStart {
			in.start(t)
		}
	}
	return is, nw
}

func (in *instance) start(t testing.TB) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.r.Run(ctx) }()
	in.stop = func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("%s: Run: %v", in.name, err)
		}
		in.stop = func() {}
	}
}

func resolveUnder(root, abs string) (string, string, bool) {
	rel, ok := strings.CutPrefix(abs, root+"/")
	return "docs", rel, ok
}

// write publishes fs events on the instance's tree as its capture would.
func (in *instance) write(t testing.TB, typ string, files map[string]string) uint64 {
	t.Helper()
	evs := make([]*event.Event, 0, len(files))
	for p, hash := range files {
		ev := &event.Event{Type: typ, Subject: in.root + "/" + p, Boundary: event.BoundaryKernel}
		ev.Context.SetSize(int64(len(hash)))
		ev.Context.SetUID(1000)
		if hash != "" {
			ev.SetAttr("hash", hash)
		}
		evs = append(evs, ev)
	}
	if err := in.m.PublishBatch(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	return evs[len(evs)-1].Seq
}

// quiesce waits until no round that started before now is running, so a
// partition set just before holds for every later exchange.
func quiesce(t testing.TB, is []*instance) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, in := range is {
		for _, u := range in.r.peerURLs() {
			for {
				in.r.peersMu.Lock()
				p := in.r.peers[u]
				busy := p != nil && p.busy
				in.r.peersMu.Unlock()
				if !busy {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: a round with %s does not end", in.name, u)
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
}

func (in *instance) snapshot() *State {
	in.r.mu.RLock()
	defer in.r.mu.RUnlock()
	return in.r.state.Clone()
}

// waitConverged waits until every instance holds the same catalog with
// want keys (tombstones included; -1: any) and returns how long it took.
func waitConverged(t testing.TB, is []*instance, want int, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if converged(is, want) {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			s0 := is[0].snapshot()
			for _, in := range is {
				s := in.snapshot()
				t.Logf("%s: %d keys, summary %v", in.name, s.Len(), s.summary)
				for k, vs := range s.keys {
					if ws := s0.keys[k]; len(ws) != len(vs) || len(vs) > 0 && (ws[0].Origin != vs[0].Origin || ws[0].Counter != vs[0].Counter) {
						t.Logf("  %v: %+v; %s has %+v", k, vs, is[0].name, ws)
					}
				}
				for k, ws := range s0.keys {
					if _, ok := s.keys[k]; !ok {
						t.Logf("  %v missing; %s has %+v", k, is[0].name, ws)
					}
				}
			}
			t.Fatalf("not converged after %v", limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// converged compares summaries and sizes first (cheap), then catalogs.
func converged(is []*instance, want int) bool {
	var sum VersionVector
	n := -1
	for _, in := range is {
		in.r.mu.RLock()
		s, l := in.r.state.Summary(), in.r.state.Len()
		in.r.mu.RUnlock()
		if (want >= 0 && l != want) || (n >= 0 && (l != n || s.Compare(sum) != Equal)) {
			return false
		}
		sum, n = s, l
	}
	is[0].r.mu.RLock()
	defer is[0].r.mu.RUnlock()
	for _, in := range is[1:] {
		in.r.mu.RLock()
		eq := in.r.state.Equal(is[0].r.state)
		in.r.mu.RUnlock()
		if !eq {
			return false
		}
	}
	return true
}
