package replica

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/semprop/semprop/event"
)

// A history checker for each consistency model, on histories recorded
// from clients of running instances.

// written is one write of a history: its dot, and deps, a vector its
// causal past is covered by from below (the writer's summary before it).
type written struct {
	key     Key
	origin  string
	counter uint64
	hash    string
	deps    VersionVector
}

// observation is one read of a history.
type observation struct {
	client  int
	model   Consistency
	token   VersionVector // sent (session)
	entries []Entry
	summary VersionVector
}

// history indexes writes by dot.
type history struct {
	writes map[string]written // "origin:counter"
	reads  []observation
}

func dotKey(origin string, counter uint64) string { return fmt.Sprintf("%s:%d", origin, counter) }

// presentOrSuperseded reports whether a read shows w or a version that
// has seen it.
func presentOrSuperseded(o observation, w written) bool {
	for _, e := range o.entries {
		if e.Tree != w.key.Tree || e.Path != w.key.Path {
			continue
		}
		for _, v := range e.Versions {
			if v.VV.Has(w.origin, w.counter) {
				return true
			}
		}
	}
	return false
}

// checkValid: every version a read shows was written, with its content.
func checkValid(h *history) error {
	for i, o := range h.reads {
		for _, e := range o.entries {
			for _, v := range e.Versions {
				w, ok := h.writes[dotKey(v.Origin, v.Counter)]
				if !ok || w.hash != v.Hash || w.key != (Key{e.Tree, e.Path}) {
					return fmt.Errorf("read %d shows %s/%s version %s:%d (hash %q) that nobody wrote", i, e.Tree, e.Path, v.Origin, v.Counter, v.Hash)
				}
			}
		}
	}
	return nil
}

// checkCausal: a read that shows a version shows everything in its
// causal past (or what superseded it).
func checkCausal(h *history, model Consistency) error {
	for i, o := range h.reads {
		if o.model != model {
			continue
		}
		for _, e := range o.entries {
			for _, v := range e.Versions {
				wv := h.writes[dotKey(v.Origin, v.Counter)]
				for _, w := range h.writes {
					if wv.deps.Has(w.origin, w.counter) && !presentOrSuperseded(o, w) {
						return fmt.Errorf("%v read %d shows %s:%d on %s but not %s:%d on %s in its causal past", model, i, v.Origin, v.Counter, e.Path, w.origin, w.counter, w.key.Path)
					}
				}
			}
		}
	}
	return nil
}

// checkSession: each client's session reads are monotonic (what one
// showed, later ones show or supersede) and show the client's writes
// that its token covers.
func checkSession(h *history, own map[int][]written) error {
	last := map[int]observation{}
	for i, o := range h.reads {
		if o.model != Session {
			continue
		}
		if prev, ok := last[o.client]; ok {
			for _, e := range prev.entries {
				for _, v := range e.Versions {
					if w := h.writes[dotKey(v.Origin, v.Counter)]; !presentOrSuperseded(o, w) {
						return fmt.Errorf("session read %d of client %d lost %s:%d on %s that its previous read showed", i, o.client, v.Origin, v.Counter, e.Path)
					}
				}
			}
		}
		for _, w := range own[o.client] {
			if o.token.Has(w.origin, w.counter) && !presentOrSuperseded(o, w) {
				return fmt.Errorf("session read %d of client %d misses its own write %s:%d on %s", i, o.client, w.origin, w.counter, w.key.Path)
			}
		}
		last[o.client] = o
	}
	return nil
}

func TestCheckersCatchViolations(t *testing.T) {
	k1, k2 := Key{"docs", "a"}, Key{"docs", "b"}
	w1 := written{key: k1, origin: "x", counter: 1, hash: "1", deps: VersionVector{}}
	w2 := written{key: k2, origin: "x", counter: 2, hash: "2", deps: VersionVector{"x": 1}}
	h := &history{writes: map[string]written{"x:1": w1, "x:2": w2}}
	entry := func(w written) Entry {
		return Entry{Tree: w.key.Tree, Path: w.key.Path, Versions: []EntryVersion{{File: File{Hash: w.hash}, Origin: w.origin, Counter: w.counter, VV: VersionVector{w.origin: w.counter}}}}
	}
	h.reads = []observation{{model: Causal, entries: []Entry{entry(w2)}}}
	if checkCausal(h, Causal) == nil {
		t.Error("checkCausal accepted a read showing x:2 without x:1")
	}
	h.reads = []observation{{model: Session, client: 1, entries: []Entry{entry(w1)}}, {model: Session, client: 1}}
	if checkSession(h, nil) == nil {
		t.Error("checkSession accepted a read that lost what the previous one showed")
	}
	h.reads = []observation{{model: Session, client: 1, token: VersionVector{"x": 1}}}
	if checkSession(h, map[int][]written{1: {w1}}) == nil {
		t.Error("checkSession accepted a read missing the client's own write")
	}
	h.reads = []observation{{entries: []Entry{{Tree: "docs", Path: "a", Versions: []EntryVersion{{File: File{Hash: "forged"}, Origin: "x", Counter: 1}}}}}}
	if checkValid(h) == nil {
		t.Error("checkValid accepted a version nobody wrote")
	}
}

// TestCausalHidesPartialTransfer: an eventual read shows the chunks of a
// full transfer as they come, which can break causality; a causal read
// shows them only once the transfer is complete.
func TestCausalHidesPartialTransfer(t *testing.T) {
	is, _ := newInstances(t, clusterOpts{n: 2, noStart: true})
	x, y := is[0], is[1]
	x.r.mu.Lock()
	v1, _ := x.r.state.Local("n0", 1, Key{"docs", "a"}, File{Hash: "1"})
	deps := x.r.state.Summary()
	v2, _ := x.r.state.Local("n0", 2, Key{"docs", "b"}, File{Hash: "2"})
	x.r.mu.Unlock()
	h := &history{writes: map[string]written{
		"n0:1": {key: Key{"docs", "a"}, origin: "n0", counter: 1, hash: "1", deps: VersionVector{}},
		"n0:2": {key: Key{"docs", "b"}, origin: "n0", counter: 2, hash: "2", deps: deps},
	}}
	_ = v1
	// y has received the chunk holding b but not yet the one holding a.
	y.r.stage("n0", []Change{{Key: Key{"docs", "b"}, Version: v2}}, VersionVector{"n0": 2})
	for _, m := range []Consistency{Eventual, Causal} {
		es, sum, err := y.r.Read(context.Background(), Query{Consistency: m})
		if err != nil {
			t.Fatal(err)
		}
		h.reads = append(h.reads, observation{model: m, entries: es, summary: sum})
	}
	if err := checkCausal(h, Causal); err != nil {
		t.Errorf("causal reads: %v", err)
	}
	if err := checkCausal(h, Eventual); err == nil {
		t.Errorf("the eventual read of a partial transfer passed the causal check: %+v", h.reads[0].entries)
	}
}

// TestConsistencyHistories runs clients against three instances whose
// network partitions and heals at random, records every read and write,
// and checks each model's guarantee on the history.
func TestConsistencyHistories(t *testing.T) {
	is, nw := newInstances(t, clusterOpts{n: 3, config: func(i int, c *Config) {
		c.Interval = 20 * time.Millisecond
		c.SessionWait = 300 * time.Millisecond
	}})
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	h := &history{writes: map[string]written{}}
	own := map[int][]written{}
	tokens := map[int]VersionVector{}
	lags := 0
	ctx := context.Background()
	for step := range 300 {
		switch op := rng.IntN(10); {
		case op == 0:
			if rng.IntN(2) == 0 {
				nw.heal()
			} else {
				a := rng.IntN(3)
				var rest []*instance
				for i, in := range is {
					if i != a {
						rest = append(rest, in)
					}
				}
				nw.partition([]*instance{is[a]}, rest)
			}
		case op < 5: // a client writes on some instance
			c, x := rng.IntN(3), is[rng.IntN(3)]
			path := fmt.Sprintf("f%d", rng.IntN(8))
			deps := x.r.Summary()
			hash := fmt.Sprintf("s%d", step)
			seq := x.write(t, event.TypeWrite, map[string]string{path: hash})
			waitApplied(t, x)
			w := written{key: Key{"docs", path}, origin: x.name, counter: seq, hash: hash, deps: deps}
			h.writes[dotKey(x.name, seq)] = w
			own[c] = append(own[c], w)
			tokens[c] = tokens[c].Merge(x.r.Summary()) // the client read its write back there
		default: // a client reads somewhere, under some model
			c, y := rng.IntN(3), is[rng.IntN(3)]
			m := []Consistency{Eventual, Causal, Session}[rng.IntN(3)]
			q := Query{Consistency: m, Token: tokens[c].Clone(), Deleted: true}
			es, sum, err := y.r.Read(ctx, q)
			if errors.Is(err, ErrSessionLag) {
				lags++
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			h.reads = append(h.reads, observation{client: c, model: m, token: q.Token, entries: es, summary: sum})
			if m == Session {
				tokens[c] = tokens[c].Merge(sum)
			}
		}
	}
	nw.heal()
	waitConverged(t, is, -1, 10*time.Second)
	for _, in := range is { // after quiescence every replica shows every maximal write
		es, sum, err := in.r.Read(ctx, Query{Deleted: true})
		if err != nil {
			t.Fatal(err)
		}
		h.reads = append(h.reads, observation{client: -1, model: Eventual, entries: es, summary: sum})
		for _, w := range h.writes {
			if !presentOrSuperseded(h.reads[len(h.reads)-1], w) {
				t.Errorf("%s after convergence lacks %s:%d on %s", in.name, w.origin, w.counter, w.key.Path)
			}
		}
	}
	if err := checkValid(h); err != nil {
		t.Error(err)
	}
	for _, m := range []Consistency{Causal, Session} {
		if err := checkCausal(h, m); err != nil {
			t.Error(err)
		}
	}
	if err := checkSession(h, own); err != nil {
		t.Error(err)
	}
	t.Logf("%d writes, %d reads, %d session reads refused while the replica lagged", len(h.writes), len(h.reads), lags)
}

// TestSessionTokenOverHTTP: a token from one instance makes a session
// read elsewhere wait for the writes it covers, or refuse.
func TestSessionTokenOverHTTP(t *testing.T) {
	is, nw := newInstances(t, clusterOpts{n: 2, config: func(i int, c *Config) { c.SessionWait = 300 * time.Millisecond }})
	a, b := is[0], is[1]
	nw.partition([]*instance{a}, []*instance{b})
	quiesce(t, is)
	a.write(t, event.TypeCreate, map[string]string{"mine": "1"})
	waitApplied(t, a)
	_, sr, hdr := getState(t, a, url.Values{"consistency": {"session"}}, nil)
	tok := hdr.Get(SessionHeader)
	if tok == "" || tok != sr.Session {
		t.Fatalf("session token header %q, body %q", tok, sr.Session)
	}
	code, _, _ := getState(t, b, url.Values{"consistency": {"session"}}, http.Header{SessionHeader: {tok}})
	if code != http.StatusServiceUnavailable {
		t.Fatalf("session read on a replica behind the token: status %d, want 503", code)
	}
	nw.heal()
	code, sr, _ = getState(t, b, url.Values{"consistency": {"session"}, "session": {tok}}, nil)
	deadline := time.Now().Add(10 * time.Second)
	for code == http.StatusServiceUnavailable && time.Now().Before(deadline) { // each waits up to session_wait
		code, sr, _ = getState(t, b, url.Values{"consistency": {"session"}, "session": {tok}}, nil)
	}
	if code != http.StatusOK || len(sr.Entries) != 1 || sr.Entries[0].Path != "mine" {
		t.Fatalf("session read after heal: %d %+v", code, sr.Entries)
	}
}

// TestStrongIsLinearizable: with a cluster read point, strong reads of a
// register written through the journal are linearizable (porcupine).
func TestStrongIsLinearizable(t *testing.T) {
	is, _ := newInstances(t, clusterOpts{n: 1, noStart: true})
	in := is[0]
	in.r.opts.LinearizableRead = func(context.Context) error { return nil } // one node: the journal is the order
	in.r.opts.LastSeq = in.m.Journal().LastSeq
	in.start(t)
	type input struct {
		write bool
		val   string
	}
	var mu sync.Mutex
	var ops []porcupine.Operation
	record := func(client int, in input, out string, call, ret time.Time) {
		mu.Lock()
		ops = append(ops, porcupine.Operation{ClientId: client, Input: in, Output: out, Call: call.UnixNano(), Return: ret.UnixNano()})
		mu.Unlock()
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 40 {
			v := fmt.Sprintf("v%d", i)
			call := time.Now()
			in.write(t, event.TypeWrite, map[string]string{"reg": v})
			record(0, input{true, v}, "", call, time.Now())
		}
	})
	for c := 1; c <= 2; c++ {
		wg.Go(func() {
			for range 40 {
				call := time.Now()
				es, _, err := in.r.Read(context.Background(), Query{Consistency: Strong})
				if err != nil {
					t.Error(err)
					return
				}
				out := ""
				if len(es) == 1 {
					out = es[0].Versions[0].Hash
				}
				record(c, input{false, ""}, out, call, time.Now())
			}
		})
	}
	wg.Wait()
	model := porcupine.Model{
		Init: func() any { return "" },
		Step: func(st, inp, out any) (bool, any) {
			i := inp.(input)
			if i.write {
				return true, i.val
			}
			return out.(string) == st.(string), st
		},
	}
	if !porcupine.CheckOperations(model, ops) {
		t.Fatal("strong reads are not linearizable")
	}
	// The checker can fail: a read that returns an overwritten value after
	// the overwrite completed is not linearizable.
	stale := []porcupine.Operation{
		{ClientId: 0, Input: input{true, "a"}, Call: 0, Return: 1},
		{ClientId: 0, Input: input{true, "b"}, Call: 2, Return: 3},
		{ClientId: 1, Input: input{false, ""}, Output: "a", Call: 4, Return: 5},
	}
	if porcupine.CheckOperations(model, stale) {
		t.Fatal("porcupine accepted a stale read")
	}
}

// TestDeltaWaitsForItsBase: a delta computed against a base this replica
// has not reached waits, visible to eventual reads only, until a delta
// that brings the base arrives.
func TestDeltaWaitsForItsBase(t *testing.T) {
	is, _ := newInstances(t, clusterOpts{n: 1, noStart: true})
	y := is[0].r
	x := NewState()
	x.Local("x", 1, Key{"docs", "a"}, File{Hash: "1"})
	base := x.Summary()
	x.Local("x", 2, Key{"docs", "b"}, File{Hash: "2"})
	y.merge(x.Delta(base), base) // b alone, computed against {x:1}
	count := func(m Consistency) int {
		es, _, err := y.Read(context.Background(), Query{Consistency: m})
		if err != nil {
			t.Fatal(err)
		}
		return len(es)
	}
	if c, e := count(Causal), count(Eventual); c != 0 || e != 1 {
		t.Fatalf("before the base: causal shows %d entries, eventual %d; want 0 and 1", c, e)
	}
	if s := y.Summary(); s.Sum() != 0 {
		t.Fatalf("summary rose to %v without the base", s)
	}
	y.merge(x.Delta(VersionVector{}), VersionVector{})
	if c := count(Causal); c != 2 || y.Summary().Compare(x.Summary()) != Equal {
		t.Fatalf("after the base: causal shows %d entries, summary %v; want 2 and %v", c, y.Summary(), x.Summary())
	}
}
