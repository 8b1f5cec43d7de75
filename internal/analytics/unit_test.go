package analytics

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
)

func TestDirOf(t *testing.T) {
	for _, tc := range []struct {
		path  string
		depth int
		want  string
	}{
		{"/srv/data/x/y", 2, "/srv/data"},
		{"/srv/data/x/y", 1, "/srv"},
		{"/srv/data/x/y", 3, "/srv/data/x"},
		{"/srv/data", 2, "/srv"},
		{"/a", 2, "/"},
		{"", 2, ""},
		{"relative/x", 2, ""},
	} {
		if got := dirOf(tc.path, tc.depth); got != tc.want {
			t.Errorf("dirOf(%q, %d) = %q, want %q", tc.path, tc.depth, got, tc.want)
		}
	}
}

func TestCommas(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 4812: "4,812", 1234567: "1,234,567", -4812: "-4,812"} {
		if got := commas(n); got != want {
			t.Errorf("commas(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("the defaults: %v", err)
	}
	for _, c := range []Config{
		{DirDepth: 17},
		{Lateness: time.Minute},
		{SessionGap: time.Millisecond},
		{TopPaths: 4},
		{MaxKeys: 2},
		{Retention: Retention{Second: time.Second}},
		{Insights: InsightConfig{Threshold: 0.5}},
	} {
		if err := c.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("Validate(%+v) = %v, want ErrConfig", c, err)
		}
	}
}

// TestSpaceSavingBound: after a stream where one key holds half the
// events and the rest are distinct, the heavy key is monitored with its
// exact count, and every count bounds its key's true count from above.
func TestSpaceSavingBound(t *testing.T) {
	s := newSpaceSaving(16)
	for i := range 10000 {
		if i%2 == 0 {
			s.add("hot", 1)
		} else {
			s.add(string(rune('a'+i%26))+string(rune('A'+i%23)), 0)
		}
	}
	e, ok := s.get("hot")
	if !ok || e.count != 5000 || e.err != 0 {
		t.Fatalf("hot = %+v, want count 5000, error 0", e)
	}
	s.each(func(e ssCount) {
		if e.count-e.err < 0 || e.count < e.err {
			t.Errorf("%q: count %d error %d", e.key, e.count, e.err)
		}
	})
}

// TestSessions: a process's events closer than the gap form one session;
// the watermark passing last+gap closes it.
func TestSessions(t *testing.T) {
	e := newTestEngine(t, Config{SessionGap: 10 * time.Second}, Options{})
	t0 := time.Now().Add(-time.Hour).Truncate(time.Minute)
	seq := uint64(0)
	at := func(d time.Duration, comm string) {
		seq++
		ev := fsEvent("fs.write", "/a/b", comm, 1, 1, t0.Add(d))
		ev.Seq = seq
		e.Apply(ev)
	}
	at(0, "rsync")
	at(5*time.Second, "rsync")
	at(9*time.Second, "rsync")
	at(30*time.Second, "rsync") // a new session: 21 s after the last
	at(60*time.Second, "vim")   // moves the watermark past 30+10
	ss, _ := e.Sessions(nil)
	var closed []Session
	for _, s := range ss {
		if s.Comm == "rsync" {
			closed = append(closed, s)
		}
	}
	if len(closed) != 2 || closed[0].Count != 3 || closed[0].End-closed[0].Start != 9 || closed[1].Count != 1 {
		t.Errorf("rsync sessions = %+v, want 3 events over 9 s, then 1", closed)
	}
}

type fakePublisher struct{ evs chan *event.Event }

func (f *fakePublisher) Publish(_ context.Context, ev *event.Event) (uint64, error) {
	f.evs <- ev
	return 1, nil
}

// TestInsightPublished: a fresh insight is published as a
// semprop.insight.<kind> event about its directory, with the insight as
// data; one about a minute older than MaxAge (found catching up) is kept
// but not published.
func TestInsightPublished(t *testing.T) {
	now := time.Date(2026, 12, 5, 3, 13, 0, 0, time.UTC)
	pub := &fakePublisher{evs: make(chan *event.Event, 4)}
	e := newTestEngine(t, Config{}, Options{Publisher: pub, Source: "semprop://h/analytics", Now: func() time.Time { return now }})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { e.publishLoop(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	old := Insight{Kind: KindDrop, Time: now.Add(-time.Hour), By: "comm@dir", Key: "postgres@/var/lib"}
	in := Insight{Kind: KindSpike, Time: now.Add(-time.Minute), By: "comm@dir", Key: "rsync@/srv/data", Value: 4812,
		Explanation: "rsync deleted 4,812 files under /srv/data in 1 min; usual is 0–3"}
	e.addInsight(old)
	e.addInsight(in)
	select {
	case ev := <-pub.evs:
		var got Insight
		if err := json.Unmarshal(ev.Data, &got); err != nil {
			t.Fatal(err)
		}
		if ev.Type != "semprop.insight.spike" || ev.Subject != "/srv/data" || ev.Source != "semprop://h/analytics" || got.Explanation != in.Explanation {
			t.Errorf("published %s %s %s %+v", ev.Type, ev.Subject, ev.Source, got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing published")
	}
	select {
	case ev := <-pub.evs:
		t.Errorf("the old insight was published: %s", ev.Data)
	case <-time.After(50 * time.Millisecond):
	}
	if got := e.Insights(nil, time.Time{}, 10); len(got) != 2 || got[0].Kind != KindSpike {
		t.Errorf("Insights = %+v, want both, newest first", got)
	}
}

// TestLiveRatesDecay: the live rates end at the wall clock on a quiet
// stream, so they fall to 0 when the events stop.
func TestLiveRatesDecay(t *testing.T) {
	t0 := time.Now().Truncate(time.Second)
	now := t0
	e := newTestEngine(t, Config{}, Options{Now: func() time.Time { return now }})
	for i := range 10 {
		ev := fsEvent("fs.write", "/a/b", "x", 1, 100, t0.Add(-time.Duration(i)*100*time.Millisecond-2*time.Second))
		ev.Seq = uint64(i + 1)
		e.Apply(ev)
	}
	f, err := e.Live(nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.Rate != 2 || f.Rates["fs.write"] != 2 || f.BytesPerSec != 200 {
		t.Errorf("live now: rate %v %v bytes/s %v, want 2 events/s and 200 B/s (10 events over 5 s)", f.Rate, f.Rates, f.BytesPerSec)
	}
	now = t0.Add(10 * time.Second)
	if f, _ = e.Live(nil); f.Rate != 0 || len(f.Rates) != 0 || f.Second != now.Unix()-2 {
		t.Errorf("live 10 s later: rate %v %v second %d, want 0 at %d", f.Rate, f.Rates, f.Second, now.Unix()-2)
	}
}

// TestBytesFromSize: an fs.write without a bytes count (the kernel
// boundary, FUSE passthrough) counts the file's size after the write; one
// with a count counts that; other types count nothing.
func TestBytesFromSize(t *testing.T) {
	e := newTestEngine(t, Config{}, Options{})
	now := time.Now()
	mk := func(typ string, seq uint64) *event.Event {
		ev := &event.Event{Type: typ, Subject: "/srv/data/f", Time: now, Seq: seq}
		ev.Context.Comm = "cp"
		ev.Context.Size, ev.Context.Known = 1000, event.HasSize
		return ev
	}
	e.Apply(mk("fs.write", 1))
	counted := mk("fs.write", 2)
	counted.Context.SetBytes(10)
	e.Apply(counted)
	e.Apply(mk("fs.create", 3))
	top, err := e.Top(nil, "comm", 5*time.Minute, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Items) != 1 || top.Items[0].Bytes != 1010 || top.Items[0].Count != 3 {
		t.Fatalf("top = %+v, want cp with 3 events and 1000+10 bytes", top.Items)
	}
}
