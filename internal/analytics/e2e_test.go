package analytics

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/api"
	"github.com/semprop/semprop/internal/auth"
	"github.com/semprop/semprop/internal/filter"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
)

var quiet = slog.New(slog.DiscardHandler)

const (
	tokAdmin  = "admin-token-0123456789"
	tokPublic = "public-token-0123456789"
	tokMasked = "masked-token-0123456789"
)

// stack is a journal, a manager, an API server and an analytics engine,
// as the daemon wires them.
type stack struct {
	dir  string
	j    *journal.Journal
	m    *propagate.Manager
	a    *auth.Authenticator
	e    *Engine
	hs   *httptest.Server
	stop func()
}

func newAuth(t testing.TB) *auth.Authenticator {
	t.Helper()
	a, err := auth.New([]auth.TokenSpec{
		{Name: "admin", Token: tokAdmin, Scopes: []string{"admin"}},
		{Name: "public", Token: tokPublic, Scopes: []string{"subscribe:fs.>", "subscribe:semprop.>"}, Paths: []string{"/public/**"}},
		{Name: "masked", Token: tokMasked, Scopes: []string{"subscribe:fs.>"},
			Redact: &filter.RedactSpec{Rules: []filter.RedactRule{{Field: "comm", Action: "mask"}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// newStack opens the journal in dir (kept across calls) and starts an
// engine with its history under dir/analytics.
func newStack(t testing.TB, dir string, a *auth.Authenticator) *stack {
	t.Helper()
	return newStackConfig(t, dir, a, Config{})
}

func newStackConfig(t testing.TB, dir string, a *auth.Authenticator, cfg Config) *stack {
	t.Helper()
	j, err := journal.Open(journal.Options{Dir: filepath.Join(dir, "journal"), Fsync: journal.FsyncInterval, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m, err := propagate.New(propagate.Options{Journal: j, Dir: dir, Source: "semprop://test", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	var ps []*auth.Principal
	for _, n := range []string{"admin", "public", "masked"} {
		p, _ := a.Lookup(n)
		ps = append(ps, p)
	}
	e, err := New(cfg, Options{
		Dir:        filepath.Join(dir, "analytics"),
		Open:       func(from uint64) (Source, error) { return m.Reader(from) },
		FirstSeq:   j.FirstSeq,
		Publisher:  m,
		Source:     "semprop://test/analytics",
		Principals: ps,
		Logger:     quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := api.New(api.Options{Manager: m, Auth: a, Logger: quiet})
	e.Register(srv)
	srv.SetReady(true, "")
	hs := httptest.NewServer(srv)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := e.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	})
	s := &stack{dir: dir, j: j, m: m, a: a, e: e, hs: hs}
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			hs.Close()
			srv.Close()
			cancel()
			wg.Wait()
			m.Close()
			j.Close()
		})
	}
	t.Cleanup(s.stop)
	return s
}

// caughtUp waits until the engine has read every durable event.
func (s *stack) caughtUp(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.e.Seq() < s.j.DurableSeq() {
		if time.Now().After(deadline) {
			t.Fatalf("engine at seq %d, journal at %d", s.e.Seq(), s.j.DurableSeq())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *stack) publish(t testing.TB, evs []*event.Event) {
	t.Helper()
	if err := s.m.PublishBatch(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
}

func fsEvent(typ, path, comm string, uid uint32, size int64, at time.Time) *event.Event {
	ev := &event.Event{Type: typ, Subject: path, Time: at}
	ev.Context.Comm = comm
	ev.Context.SetUID(uid)
	if size > 0 {
		ev.Context.SetBytes(size)
	}
	return ev
}

// TestTokensSeeOnlyTheirEvents: a token limited to /public never sees a
// /secret path, its process or its counts in any aggregate; a token with
// comm masked never sees a comm; the admin sees everything.
func TestTokensSeeOnlyTheirEvents(t *testing.T) {
	s := newStack(t, t.TempDir(), newAuth(t))
	now := time.Now()
	var evs []*event.Event
	for i := range 30 {
		evs = append(evs, fsEvent("fs.write", fmt.Sprintf("/public/docs/f%d", i%3), "pubproc", 1000, 100, now))
	}
	for i := range 50 {
		evs = append(evs, fsEvent("fs.write", fmt.Sprintf("/secret/keys/k%d", i%5), "secretproc", 0, 10, now))
	}
	s.publish(t, evs)
	s.caughtUp(t)

	get := func(tok, path string, out any) {
		t.Helper()
		req, _ := http.NewRequest("GET", s.hs.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	for _, by := range []string{"path", "comm", "uid", "dir", "type"} {
		var pub, adm TopResponse
		get(tokPublic, "/v1/analytics/top?by="+by+"&window=1m&k=100", &pub)
		get(tokAdmin, "/v1/analytics/top?by="+by+"&window=1m&k=100", &adm)
		if pub.Total != 30 || adm.Total != 80 {
			t.Errorf("by %s: totals public %d admin %d, want 30 and 80", by, pub.Total, adm.Total)
		}
		b, _ := json.Marshal(pub)
		if strings.Contains(string(b), "secret") || strings.Contains(string(b), `"0"`) {
			t.Errorf("by %s: the public token sees %s", by, b)
		}
		if by == "path" || by == "comm" || by == "dir" {
			ab, _ := json.Marshal(adm)
			if !strings.Contains(string(ab), "secret") {
				t.Errorf("by %s: the admin does not see the secret keys: %s", by, ab)
			}
		}
	}
	var masked TopResponse
	get(tokMasked, "/v1/analytics/top?by=comm&window=1m", &masked)
	for _, it := range masked.Items {
		if it.Key == "pubproc" || it.Key == "secretproc" {
			t.Errorf("the masked token sees comm %q", it.Key)
		}
	}
	var series SeriesResponse
	get(tokPublic, "/v1/analytics/series?by=dir&step=1s", &series)
	var total int64
	for _, sr := range series.Series {
		if strings.Contains(sr.Key, "secret") {
			t.Errorf("series: the public token sees %q", sr.Key)
		}
		for _, v := range sr.Values {
			total += v
		}
	}
	if total != 30 {
		t.Errorf("series: the public token counts %d events, want 30", total)
	}

	var summary Summary
	get(tokPublic, "/v1/analytics/summary?window=1m", &summary)
	if summary.Events != 30 || summary.DistinctPaths != 3 || summary.WriteP50 < 99 || summary.WriteP50 > 101 {
		t.Errorf("summary for the public token = %+v, want 30 events, 3 paths, writes of 100 bytes", summary)
	}
	var sess SessionsResponse
	get(tokPublic, "/v1/analytics/sessions", &sess)
	if len(sess.Items) != 1 || sess.Items[0].Comm != "pubproc" || sess.Items[0].Count != 30 {
		t.Errorf("sessions for the public token = %+v, want pubproc's 30 events", sess)
	}

	// The live stream, with the same filtering.
	req, _ := http.NewRequest("GET", s.hs.URL+"/v1/analytics/live", nil)
	req.Header.Set("Authorization", "Bearer "+tokPublic)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("live: content type %q", ct)
	}
	f := readFrame(t, bufio.NewReader(resp.Body))
	b, _ := json.Marshal(f)
	if strings.Contains(string(b), "secret") {
		t.Errorf("live: the public token sees %s", b)
	}
	if f.Seq != s.j.DurableSeq() || len(f.Top["path"]) != 3 || f.Top["comm"][0].Key != "pubproc" || f.Top["comm"][0].Count != 30 {
		t.Errorf("live frame = %s, want seq %d and the 3 public paths", b, s.j.DurableSeq())
	}

	// An unknown token is refused by the API; a bad parameter is a 400.
	for path, want := range map[string]int{
		"/v1/analytics/top?by=inode":       400,
		"/v1/analytics/top?window=2h":      400,
		"/v1/analytics/series?step=5m":     400,
		"/v1/analytics/series?metric=x":    400,
		"/v1/analytics/insights?since=abc": 400,
	} {
		req, _ := http.NewRequest("GET", s.hs.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+tokPublic)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	resp2, err := http.Get(s.hs.URL + "/v1/analytics/top")
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != 401 {
		t.Errorf("GET /v1/analytics/top without a token: %d, want 401", resp2.StatusCode)
	}

	// The client.
	c := client.New(s.hs.URL, tokAdmin)
	top, err := c.Top(context.Background(), client.TopQuery{By: "comm", Window: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Items) != 2 || top.Items[0].Key != "secretproc" || top.Items[0].Count != 50 || top.Items[0].Bytes != 500 {
		t.Errorf("client.Top = %+v", top)
	}
	sr, err := c.Series(context.Background(), client.SeriesQuery{By: "type", Step: "1s"})
	if err != nil {
		t.Fatal(err)
	}
	if len(sr.Series) != 1 || sr.Series[0].Key != "fs.write" || sum(sr.Series[0].Values) != 80 {
		t.Errorf("client.Series = %+v", sr)
	}
}

func sum(vs []int64) (n int64) {
	for _, v := range vs {
		n += v
	}
	return n
}

func readFrame(t testing.TB, br *bufio.Reader) LiveFrame {
	t.Helper()
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("live: %v", err)
		}
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			var f LiveFrame
			if err := json.Unmarshal([]byte(data), &f); err != nil {
				t.Fatalf("live frame %q: %v", data, err)
			}
			return f
		}
	}
}

// TestRebuild: the history is derived data. Deleted, it comes back from the
// journal with the same answers; behind (events written while the engine
// was stopped), it catches up to the same answers as a full rebuild.
func TestRebuild(t *testing.T) {
	dir := t.TempDir()
	a := newAuth(t)
	// 90 minutes of activity that ended two hours ago: every 1s and 1m
	// pane but the last ones closes, and one hour closes.
	start := time.Now().Add(-4 * time.Hour).Truncate(time.Hour).Add(30 * time.Minute)
	batch := func(from, to time.Duration) []*event.Event {
		var evs []*event.Event
		for d := from; d < to; d += 7 * time.Second {
			i := int(d / time.Second)
			evs = append(evs, fsEvent([]string{"fs.write", "fs.create"}[i%2], fmt.Sprintf("/srv/d%d/f%d", i%3, i%11),
				[]string{"rsync", "vim", "nginx"}[i%3], uint32(i%4), int64(i%1000), start.Add(d)))
		}
		return evs
	}
	queries := []string{
		"/v1/analytics/series?by=type&step=1m&from=%d&to=%d",
		"/v1/analytics/series?by=comm&step=1h&from=%d&to=%d&metric=bytes",
		"/v1/analytics/series?by=dir&step=1s&from=%d&to=%d",
		"/v1/analytics/series?by=uid&step=1m&from=%d&to=%d",
	}
	answers := func(s *stack, tok string) []SeriesResponse {
		t.Helper()
		s.caughtUp(t)
		var out []SeriesResponse
		for _, q := range queries {
			path := fmt.Sprintf(q, start.Add(-time.Hour).Unix(), start.Add(3*time.Hour).Unix())
			if strings.Contains(q, "1s") {
				path = fmt.Sprintf(q, start.Add(60*time.Minute).Unix(), start.Add(70*time.Minute).Unix())
			}
			req, _ := http.NewRequest("GET", s.hs.URL+path, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var r SeriesResponse
			err = json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
			}
			r.Partial = false // depends on what segments exist, not on the values
			out = append(out, r)
		}
		return out
	}

	s := newStack(t, dir, a)
	s.publish(t, batch(0, 60*time.Minute))
	s.caughtUp(t)
	s.stop()

	// Behind: more events while stopped.
	s = newStack(t, dir, a)
	s.stop()
	j, _ := journal.Open(journal.Options{Dir: filepath.Join(dir, "journal"), Logger: quiet})
	m, _ := propagate.New(propagate.Options{Journal: j, Dir: dir, Logger: quiet})
	if err := m.PublishBatch(context.Background(), batch(60*time.Minute, 90*time.Minute)); err != nil {
		t.Fatal(err)
	}
	m.Close()
	j.Close()
	s = newStack(t, dir, a)
	behind := answers(s, tokAdmin)
	behindPub := answers(s, tokMasked)
	s.stop()
	if n := sum(behind[0].Series[0].Values); n == 0 {
		t.Fatalf("no events in the series: %+v", behind[0])
	}

	if err := os.RemoveAll(filepath.Join(dir, "analytics")); err != nil {
		t.Fatal(err)
	}
	s = newStack(t, dir, a)
	rebuilt := answers(s, tokAdmin)
	rebuiltPub := answers(s, tokMasked)
	if diff := cmp.Diff(behind, rebuilt); diff != "" {
		t.Errorf("caught up vs rebuilt (-+):\n%s", diff)
	}
	if diff := cmp.Diff(behindPub, rebuiltPub); diff != "" {
		t.Errorf("masked token: caught up vs rebuilt (-+):\n%s", diff)
	}
	var total int64
	for _, sr := range rebuilt[0].Series {
		total += sum(sr.Values)
	}
	if want := int64(len(batch(0, 60*time.Minute)) + len(batch(60*time.Minute, 90*time.Minute))); total != want {
		t.Errorf("rebuilt 1m series count %d events, want %d", total, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "analytics", "all", "1h")); err != nil {
		t.Errorf("no 1h rollups: %v", err)
	}
}

// TestRestartMidHour: a restart in the middle of an hour counts each
// event of that hour once (the replay of the sliding hour rebuilds the
// open hour; nothing is added to it twice).
func TestRestartMidHour(t *testing.T) {
	dir := t.TempDir()
	a := newAuth(t)
	h := time.Now().Add(-3 * time.Hour).Truncate(time.Hour)
	var evs []*event.Event
	for d := 5 * time.Minute; d < 40*time.Minute; d += 10 * time.Second {
		evs = append(evs, fsEvent("fs.write", "/srv/data/f", "rsync", 0, 10, h.Add(d)))
	}
	hourTotal := func(s *stack) int64 {
		t.Helper()
		s.caughtUp(t)
		r, err := s.e.Series(nil, "events", "type", res1h, h.Unix(), h.Unix()+3600, 10)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, sr := range r.Series {
			n += sum(sr.Values)
		}
		return n
	}
	s := newStack(t, dir, a)
	s.publish(t, evs)
	if n := hourTotal(s); n != int64(len(evs)) {
		t.Errorf("before the restart: %d events in the hour, want %d", n, len(evs))
	}
	s.stop()
	s = newStack(t, dir, a)
	if n := hourTotal(s); n != int64(len(evs)) {
		t.Errorf("after the restart: %d events in the hour, want %d", n, len(evs))
	}
}

// TestIdleAdvance: on a quiet stream the watermark follows the wall clock,
// so the last second's pane closes and reaches the history without a
// later event.
func TestIdleAdvance(t *testing.T) {
	s := newStackConfig(t, t.TempDir(), newAuth(t), Config{IdleAdvance: 200 * time.Millisecond})
	at := time.Now()
	s.publish(t, []*event.Event{fsEvent("fs.write", "/srv/data/f", "rsync", 0, 10, at)})
	s.caughtUp(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.e.mu.Lock()
		persisted := s.e.stores[s.e.all].state.Persisted[res1s]
		s.e.mu.Unlock()
		if persisted == at.Unix() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pane of %d never closed (stored up to %d)", at.Unix(), persisted)
		}
		time.Sleep(20 * time.Millisecond)
	}
	rs, err := s.e.stores[s.e.all].read(res1s, at.Unix(), at.Unix()+1)
	if err != nil || len(rs) != 1 || rs[0].count != 1 {
		t.Fatalf("stored 1s rollups %+v, %v; want the one event", rs, err)
	}
}
