package propagate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/route"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.DiscardHandler)

type env struct {
	dir string
	j   *journal.Journal
	m   *Manager
}

func newEnv(t testing.TB, fsync journal.FsyncPolicy) *env {
	t.Helper()
	e := &env{dir: t.TempDir()}
	e.open(t, fsync)
	t.Cleanup(func() { e.close(t) })
	return e
}

func (e *env) open(t testing.TB, fsync journal.FsyncPolicy) {
	t.Helper()
	j, err := journal.Open(journal.Options{Dir: e.dir + "/journal", Fsync: fsync, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Options{Journal: j, Dir: e.dir, Source: "semprop://test", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	e.j, e.m = j, m
}

func (e *env) close(t testing.TB) {
	t.Helper()
	if e.m == nil {
		return
	}
	if err := e.m.Close(); err != nil {
		t.Error(err)
	}
	if err := e.j.Close(); err != nil {
		t.Error(err)
	}
	e.m, e.j = nil, nil
}

func (e *env) reopen(t testing.TB) {
	e.close(t)
	e.open(t, journal.FsyncNever)
}

func publishN(t testing.TB, m *Manager, typ string, n int) []uint64 {
	t.Helper()
	seqs := make([]uint64, n)
	for i := range n {
		s, err := m.Publish(context.Background(), &event.Event{Type: typ, Subject: fmt.Sprintf("/f/%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		seqs[i] = s
	}
	return seqs
}

func TestPublishFillsAndOrders(t *testing.T) {
	e := newEnv(t, journal.FsyncAlways)
	sub, err := e.m.Subscribe(SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	seqs := publishN(t, e.m, "app.thing", 5)
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("seq[%d] = %d, want %d", i, s, i+1)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var prev event.HLC
	for i := range 5 {
		ev, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Seq != uint64(i+1) || ev.ID.IsZero() || ev.Time.IsZero() || ev.Source != "semprop://test" {
			t.Errorf("event %d = %+v: want seq %d and ID, Time, Source filled", i, ev, i+1)
		}
		if ev.HLC.Compare(prev) <= 0 {
			t.Errorf("HLC %v not after %v", ev.HLC, prev)
		}
		prev = ev.HLC
	}
	if e.j.DurableSeq() != 5 {
		t.Errorf("DurableSeq = %d after Publish returned, want 5", e.j.DurableSeq())
	}
	if _, err := e.m.Publish(ctx, &event.Event{Type: "Bad Type"}); !errors.Is(err, ErrInvalidType) {
		t.Errorf("Publish(bad type) = %v, want ErrInvalidType", err)
	}
}

func TestPolicies(t *testing.T) {
	for _, tc := range []struct {
		policy      Policy
		wantSeqs    []uint64 // what the subscriber gets after 10 publishes into a queue of 4
		wantDropped uint64
	}{
		{PolicyDropNewest, []uint64{1, 2, 3, 4}, 6},
		{PolicyDropOldest, []uint64{7, 8, 9, 10}, 6},
		{PolicyBlock, []uint64{1, 2, 3, 4}, 6}, // nobody reads: each publish waits out the timeout, then drops
	} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			e := newEnv(t, journal.FsyncNever)
			sub, _ := e.m.Subscribe(SubscribeOptions{Queue: 4, Policy: tc.policy, BlockTimeout: 5 * time.Millisecond})
			start := time.Now()
			publishN(t, e.m, "a.b", 10)
			if tc.policy == PolicyBlock && time.Since(start) < 6*5*time.Millisecond {
				t.Errorf("block policy: 6 publishes took %v, want each to wait the 5ms timeout", time.Since(start))
			}
			var got []uint64
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			for {
				ev, err := sub.Next(ctx)
				if err != nil {
					break
				}
				got = append(got, ev.Seq)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.wantSeqs) {
				t.Errorf("got seqs %v, want %v", got, tc.wantSeqs)
			}
			st := sub.Stats()
			if st.Dropped != tc.wantDropped || st.Delivered != uint64(len(tc.wantSeqs)) || st.Matched != 10 {
				t.Errorf("stats = %+v, want dropped %d delivered %d matched 10", st, tc.wantDropped, len(tc.wantSeqs))
			}
		})
	}
}

func TestBlockPolicyDeliversAllToSlowReader(t *testing.T) {
	e := newEnv(t, journal.FsyncNever)
	sub, _ := e.m.Subscribe(SubscribeOptions{Queue: 2, Policy: PolicyBlock, BlockTimeout: 5 * time.Second})
	const n = 200
	done := make(chan []uint64)
	go func() {
		var got []uint64
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for len(got) < n {
			ev, err := sub.Next(ctx)
			if err != nil {
				break
			}
			got = append(got, ev.Seq)
			if len(got)%20 == 0 {
				time.Sleep(time.Millisecond) // slow reader
			}
		}
		done <- got
	}()
	publishN(t, e.m, "a.b", n)
	got := <-done
	if len(got) != n || sub.Stats().Dropped != 0 {
		t.Fatalf("got %d events, dropped %d; want %d, 0", len(got), sub.Stats().Dropped, n)
	}
	for i, s := range got {
		if s != uint64(i+1) {
			t.Fatalf("event %d has seq %d: out of order", i, s)
		}
	}
}

func TestSlowSubscriberDoesNotStallOthers(t *testing.T) {
	e := newEnv(t, journal.FsyncNever)
	stuck, _ := e.m.Subscribe(SubscribeOptions{Name: "stuck", Queue: 8, Policy: PolicyDropNewest})
	fast, _ := e.m.Subscribe(SubscribeOptions{Name: "fast", Queue: 1 << 14})
	const n = 10000
	evs := make([]*event.Event, n)
	for i := range evs {
		evs[i] = &event.Event{Type: "a.b"}
	}
	start := time.Now()
	if err := e.m.PublishBatch(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("publishing took %v with a stuck subscriber", d)
	}
	buf := make([]*event.Event, 512)
	got := 0
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for got < n {
		k, err := fast.NextBatch(ctx, buf)
		if err != nil {
			t.Fatal(err)
		}
		got += k
	}
	if st := stuck.Stats(); st.Dropped != n-8 || st.Depth != 8 {
		t.Errorf("stuck stats = %+v, want %d dropped, depth 8", st, n-8)
	}
	if st := fast.Stats(); st.Dropped != 0 || st.Delivered != n {
		t.Errorf("fast stats = %+v, want 0 dropped, %d delivered", st, n)
	}
}

func TestSubscriptionSelectors(t *testing.T) {
	e := newEnv(t, journal.FsyncNever)
	byType, _ := e.m.Subscribe(SubscribeOptions{Selector: route.Selector{Type: "fs.*"}})
	byPath, _ := e.m.Subscribe(SubscribeOptions{Selector: route.Selector{Type: "fs.>", Path: "/data/**/*.md"}})
	byFilter, _ := e.m.Subscribe(SubscribeOptions{Selector: route.Selector{Filter: "size > 10"}})
	for _, tc := range []struct {
		typ, subject string
		size         int64
	}{
		{"fs.write", "/data/a.md", 5},
		{"vector.insert", "/data/b.md", 50},
		{"fs.create", "/tmp/c.txt", 20},
		{"fs.a.b", "/data/x/d.md", 0},
	} {
		ev := &event.Event{Type: tc.typ, Subject: tc.subject}
		ev.Context.SetSize(tc.size)
		if _, err := e.m.Publish(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	drain := func(s *Subscription) string {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		var got []string
		for {
			ev, err := s.Next(ctx)
			if err != nil {
				return fmt.Sprint(got)
			}
			got = append(got, ev.Subject)
		}
	}
	for name, tc := range map[string]struct {
		s    *Subscription
		want string
	}{
		"type":   {byType, "[/data/a.md /tmp/c.txt]"},
		"path":   {byPath, "[/data/a.md /data/x/d.md]"},
		"filter": {byFilter, "[/data/b.md /tmp/c.txt]"},
	} {
		if got := drain(tc.s); got != tc.want {
			t.Errorf("%s selector got %s, want %s", name, got, tc.want)
		}
	}
	if _, err := e.m.Subscribe(SubscribeOptions{Selector: route.Selector{Type: "fs..x"}}); !errors.Is(err, route.ErrBadSelector) {
		t.Errorf("Subscribe(bad type) = %v, want ErrBadSelector", err)
	}
}

func TestDynamicGroupRoute(t *testing.T) {
	e := newEnv(t, journal.FsyncNever)
	var members []*Subscription
	for _, n := range []string{"w1", "w2", "w3"} {
		s, err := e.m.Subscribe(SubscribeOptions{Name: n, RoutedOnly: true, Queue: 4096})
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, s)
	}
	if err := e.m.AddRoutes(route.Spec{Name: "jobs", Type: "job.*", Targets: []string{"w1", "w2", "w3"}, Strategy: "key-hash"}); err != nil {
		t.Fatal(err)
	}
	if err := e.m.AddRoutes(route.Spec{Name: "bad", Type: "job.*", Targets: []string{"nobody"}}); !errors.Is(err, ErrNoSubscription) {
		t.Fatalf("route to an unknown subscription = %v, want ErrNoSubscription", err)
	}
	if err := e.m.AddRoutes(route.Spec{Name: "sub-1", Type: "x", Targets: []string{"w1"}}); err == nil {
		t.Fatal("a route named sub-1 was accepted")
	}
	const files, each = 30, 20
	for i := range each {
		for f := range files {
			ev := &event.Event{Type: "job.run", Subject: fmt.Sprintf("/f/%d", f), Attrs: []event.Attr{{Key: "n", Value: fmt.Sprint(i)}}}
			if _, err := e.m.Publish(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	owner := map[string]int{}
	used := map[int]bool{}
	total := 0
	for mi, s := range members {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		last := map[string]int{}
		for {
			ev, err := s.Next(ctx)
			if err != nil {
				break
			}
			total++
			used[mi] = true
			if o, ok := owner[ev.Subject]; ok && o != mi {
				t.Errorf("%s went to members %d and %d: key-hash must keep a file on one member", ev.Subject, o, mi)
			}
			owner[ev.Subject] = mi
			n, _ := ev.Attr("n")
			var k int
			fmt.Sscan(n, &k)
			if prev, ok := last[ev.Subject]; ok && k != prev+1 {
				t.Errorf("%s: event %d after %d: per-file order broken", ev.Subject, k, prev)
			}
			last[ev.Subject] = k
		}
		cancel()
	}
	if total != files*each || len(used) < 2 {
		t.Fatalf("group got %d events over %d members, want each of %d exactly once, spread", total, len(used), files*each)
	}
	if n := e.m.RemoveRoutes("jobs", "sub-1"); n != 1 {
		t.Errorf("RemoveRoutes = %d, want 1 (sub- routes are not removable)", n)
	}
	// Routed-only members have no own route: they are listed, with no
	// strategy, and the routing table is empty.
	for _, ri := range e.m.Routes() {
		if ri.Kind != "subscription" || ri.Strategy != "" {
			t.Errorf("route after removal %+v; routed-only members have no own route", ri)
		}
	}
	if n := e.m.router.Table().Len(); n != 0 {
		t.Errorf("routing table has %d routes after removal, want 0", n)
	}
}

func TestConcurrentPublishersDeliverInSeqOrder(t *testing.T) {
	e := newEnv(t, journal.FsyncAlways)
	sub, _ := e.m.Subscribe(SubscribeOptions{Queue: 1 << 14})
	const writers, each = 16, 200
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() { publishN(t, e.m, "a.b", each) })
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := 1; i <= writers*each; i++ {
		ev, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Seq != uint64(i) {
			t.Fatalf("delivery %d has seq %d: live delivery out of seq order", i, ev.Seq)
		}
	}
	if st := e.j.Stats(); st.Fsyncs >= writers*each {
		t.Errorf("fsyncs = %d for %d appends: group commit did not batch", st.Fsyncs, writers*each)
	}
}

func TestSubscriptionCloseWakesNext(t *testing.T) {
	e := newEnv(t, journal.FsyncNever)
	sub, _ := e.m.Subscribe(SubscribeOptions{})
	errc := make(chan error)
	go func() {
		_, err := sub.Next(context.Background())
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	sub.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Next after Close = %v, want ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Next did not return after Close")
	}
}

func TestPublishAllocs(t *testing.T) {
	e := newEnv(t, journal.FsyncNever)
	sub, _ := e.m.Subscribe(SubscribeOptions{Queue: 1 << 16})
	ev := &event.Event{ID: event.NewID(), Type: "fs.write", Subject: "/data/a.md", Time: time.Now(), HLC: e.m.Clock().Now(), Source: "s"}
	ctx := context.Background()
	n := testing.AllocsPerRun(1000, func() {
		if _, err := e.m.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
		if _, err := sub.Next(ctx); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Errorf("Publish + live delivery of a pre-built event: %v allocs/op, want 0", n)
	}
}

func BenchmarkPublishNext(b *testing.B) {
	e := newEnv(b, journal.FsyncNever)
	sub, _ := e.m.Subscribe(SubscribeOptions{Queue: 1 << 16})
	ev := &event.Event{ID: event.NewID(), Type: "fs.write", Subject: "/data/a.md", Time: time.Now(), HLC: e.m.Clock().Now(), Source: "s"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.m.Publish(ctx, ev); err != nil {
			b.Fatal(err)
		}
		if _, err := sub.Next(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func TestPriorityPolicy(t *testing.T) {
	e := newEnv(t, journal.FsyncNever)
	sub, _ := e.m.Subscribe(SubscribeOptions{Queue: 8, Policy: PolicyPriority})
	// Saturate with bulk, then publish critical and high events: they are
	// taken first, and bulk is shed to make room for them.
	for i := range 20 {
		if _, err := e.m.Publish(context.Background(), &event.Event{Type: "a.bulk", Priority: event.PriorityBulk, Subject: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []event.Priority{event.PriorityHigh, event.PriorityCritical, event.PriorityNormal} {
		if _, err := e.m.Publish(context.Background(), &event.Event{Type: "a.x", Priority: p}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var got []string
	for range 3 {
		ev, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev.Priority.String())
	}
	if fmt.Sprint(got) != "[critical high normal]" {
		t.Errorf("first three taken = %v, want [critical high normal] ahead of the queued bulk", got)
	}
	st := sub.Stats()
	// 20 bulk into 8 slots: 12 refused (bulk cannot shed bulk), then 3
	// higher events shed 3 bulk.
	if st.Lanes[0].Rejected != 12 || st.Lanes[0].Shed != 3 || st.Dropped != 15 || st.Depth != 5 {
		t.Errorf("stats = %+v, want bulk 12 rejected + 3 shed = 15 dropped, 5 bulk left", st)
	}
	sub.Close()
	n := 0
	for {
		if _, err := sub.Next(ctx); err != nil {
			if !errors.Is(err, ErrClosed) {
				t.Errorf("Next after Close and drain = %v, want ErrClosed", err)
			}
			break
		}
		n++
	}
	if n != 5 {
		t.Errorf("drained %d bulk events after Close, want 5", n)
	}
}

// TestLargeBatchWrittenByPublisher: with fsync interval a lone publisher
// of batches larger than deliverFirstMax writes them to the journal itself
// (no hand-off to the flusher), and small publishes leave the write to the
// flusher; with fsync never the journal's segment is memory-mapped and
// every publish copies its events into it. Every event is durable when
// PublishBatch returns either way.
func TestLargeBatchWrittenByPublisher(t *testing.T) {
	for _, tc := range []struct {
		policy journal.FsyncPolicy
		batch  int
		own    bool
	}{{journal.FsyncInterval, 100, true}, {journal.FsyncInterval, 1, false}, {journal.FsyncNever, 100, true}, {journal.FsyncNever, 1, true}} {
		t.Run(fmt.Sprint(tc.policy, "/batch=", tc.batch), func(t *testing.T) {
			e := newEnv(t, tc.policy)
			for range 200 {
				evs := make([]*event.Event, tc.batch)
				for i := range evs {
					evs[i] = &event.Event{Type: "bench.evt", Subject: "/data/a.md"}
				}
				if err := e.m.PublishBatch(t.Context(), evs); err != nil {
					t.Fatal(err)
				}
				if d, last := e.j.DurableSeq(), evs[len(evs)-1].Seq; d < last {
					t.Fatalf("PublishBatch returned with durable seq %d < %d", d, last)
				}
			}
			st := e.j.Stats()
			if own := st.WriterFlushes > st.Flushes/2; own != tc.own {
				t.Errorf("%d of %d journal writes by the publisher, want most: %v", st.WriterFlushes, st.Flushes, tc.own)
			}
		})
	}
}
