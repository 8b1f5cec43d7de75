package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/route"
)

// member is one SSE stream of a group, recording the seqs it receives.
type member struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	seqs   []uint64
	subj   map[string]bool
}

func (m *member) got() []uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]uint64(nil), m.seqs...)
}

func joinSSE(t *testing.T, ts *testServer, query string) *member {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	m := &member{cancel: cancel, done: make(chan struct{}), subj: map[string]bool{}}
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/v1/stream?"+query, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("stream?%s: %s", query, resp.Status)
	}
	go func() {
		defer close(m.done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var ev event.Event
			if err := ev.UnmarshalJSON([]byte(data)); err != nil {
				continue
			}
			m.mu.Lock()
			m.seqs = append(m.seqs, ev.Seq)
			m.subj[ev.Subject] = true
			m.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-m.done })
	return m
}

// waitMembers waits until group g lists n members.
func waitMembers(t *testing.T, ts *testServer, g string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, ri := range ts.m.Routes() {
			if ri.Name == g && len(ri.Members) == n {
				return
			}
		}
		if n == 0 {
			found := false
			for _, ri := range ts.m.Routes() {
				found = found || ri.Name == g
			}
			if !found {
				return
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("group %s never had %d members: %+v", g, n, ts.m.Routes())
}

// publishPaced publishes n events of type typ in batches, waiting after
// each batch until the members have received everything so far (so that
// no member's queue overflows and the strategy alone decides).
func publishPaced(t *testing.T, ts *testServer, typ string, n int, subject func(i int) string, total func() int, want int) []uint64 {
	t.Helper()
	var seqs []uint64
	for i := 0; i < n; i += 500 {
		var evs []*event.Event
		for k := i; k < min(i+500, n); k++ {
			evs = append(evs, &event.Event{Type: typ, Subject: subject(k)})
		}
		if err := ts.m.PublishBatch(context.Background(), evs); err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			seqs = append(seqs, ev.Seq)
		}
		want += len(evs)
		deadline := time.Now().Add(10 * time.Second)
		for total() < want {
			if time.Now().After(deadline) {
				t.Fatalf("members received %d events, want %d", total(), want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	return seqs
}

func totalOf(ms []*member) func() int {
	return func() int {
		n := 0
		for _, m := range ms {
			n += len(m.got())
		}
		return n
	}
}

// TestGroupSSERoundRobin: three SSE members of one group share 10,000
// events: each exactly once across members, within ±10% of a third each.
func TestGroupSSERoundRobin(t *testing.T) {
	ts := newTestServer(t, Options{})
	var ms []*member
	for i := range 3 {
		ms = append(ms, joinSSE(t, ts, fmt.Sprintf("group=workers&name=w%d&type=job.*", i)))
	}
	waitMembers(t, ts, "workers", 3)
	publish(t, ts, &event.Event{Type: "other.x"}, &event.Event{Type: "jobs.run"})
	seqs := publishPaced(t, ts, "job.run", 10000, func(i int) string { return "/f/" + strconv.Itoa(i) }, totalOf(ms), 0)
	seen := map[uint64]int{}
	for i, m := range ms {
		got := m.got()
		if len(got) < 3000 || len(got) > 3667 {
			t.Errorf("member %d got %d events, want 3333 ± 10%%", i, len(got))
		}
		for _, s := range got {
			seen[s]++
		}
	}
	for _, s := range seqs {
		if seen[s] != 1 {
			t.Fatalf("seq %d delivered %d times, want once", s, seen[s])
		}
	}
	if len(seen) != len(seqs) {
		t.Errorf("%d distinct events delivered, want %d", len(seen), len(seqs))
	}
}

// TestGroupSSEKeyHash: with a key-hash route every subject reaches one
// member only.
func TestGroupSSEKeyHash(t *testing.T) {
	ts := newTestServer(t, Options{})
	if err := ts.m.AddRoutes(route.Spec{Name: "kh", Type: "job.*", Strategy: "key-hash"}); err != nil {
		t.Fatal(err)
	}
	var ms []*member
	for range 3 {
		ms = append(ms, joinSSE(t, ts, "group=kh"))
	}
	waitMembers(t, ts, "kh", 3)
	publishPaced(t, ts, "job.run", 3000, func(i int) string { return "/f/" + strconv.Itoa(i%50) }, totalOf(ms), 0)
	owner := map[string]int{}
	for i, m := range ms {
		m.mu.Lock()
		for s := range m.subj {
			if o, ok := owner[s]; ok {
				t.Errorf("subject %s reached members %d and %d", s, o, i)
			}
			owner[s] = i
		}
		m.mu.Unlock()
	}
	if len(owner) != 50 {
		t.Errorf("%d subjects delivered, want 50", len(owner))
	}
}

// TestGroupSSEMemberKilled: a member killed mid-stream; the others go on,
// and every event published after the server noticed reaches one of
// them exactly once. Nothing reaches two members.
func TestGroupSSEMemberKilled(t *testing.T) {
	ts := newTestServer(t, Options{})
	var ms []*member
	for range 3 {
		ms = append(ms, joinSSE(t, ts, "group=g"))
	}
	waitMembers(t, ts, "g", 3)
	subj := func(i int) string { return "/f/" + strconv.Itoa(i) }
	before := publishPaced(t, ts, "job.run", 3000, subj, totalOf(ms), 0)
	// Kill member 2 while events are flowing.
	var evs []*event.Event
	for i := range 2000 {
		evs = append(evs, &event.Event{Type: "job.run", Subject: subj(i)})
	}
	errc := make(chan error, 1)
	go func() { errc <- ts.m.PublishBatch(context.Background(), evs) }()
	ms[2].cancel()
	<-ms[2].done
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	waitMembers(t, ts, "g", 2)
	live := ms[:2]
	// Wait until what was in flight at the kill has arrived.
	base := -1
	for n := totalOf(live)(); n != base; n = totalOf(live)() {
		base = n
		time.Sleep(200 * time.Millisecond)
	}
	after := publishPaced(t, ts, "job.run", 5000, subj, totalOf(live), base)
	seen := map[uint64]int{}
	for _, m := range ms {
		for _, s := range m.got() {
			seen[s]++
		}
	}
	for s, n := range seen {
		if n != 1 {
			t.Errorf("seq %d delivered %d times", s, n)
		}
	}
	for _, s := range after {
		if seen[s] != 1 {
			t.Fatalf("seq %d, published after the kill, delivered %d times, want once", s, seen[s])
		}
	}
	if n := len(seen); n > len(before)+len(evs)+len(after) {
		t.Errorf("%d events delivered, more than published", n)
	}
}

// TestGroupStreamParams: a live stream takes no after or since; a name in
// use is a 409.
func TestGroupStreamParams(t *testing.T) {
	ts := newTestServer(t, Options{})
	joinSSE(t, ts, "name=w1")
	for _, tc := range []struct {
		query, field string
		status       int
	}{
		{"group=g&after=0", "after", 400},
		{"name=n&since=10m", "since", 400},
		{"weight=2", "weight", 400},
		{"name=w1", "name", 409},
		{"after=1&since=1m", "since", 400},
	} {
		resp, err := http.Get(ts.URL + "/v1/stream?" + tc.query)
		if err != nil {
			t.Fatal(err)
		}
		var e apiError
		decodeBody(t, resp, &e)
		if resp.StatusCode != tc.status || e.Field != tc.field {
			t.Errorf("stream?%s = %d field %q, want %d field %q (%s)", tc.query, resp.StatusCode, e.Field, tc.status, tc.field, e.Error)
		}
	}
}

func decodeBody(t *testing.T, resp *http.Response, v any) {
	t.Helper()
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("decode %s: %v", resp.Request.URL, err)
	}
}
