package replica

import (
	"fmt"
	"testing"

	"pgregory.net/rapid"
)

// genState builds a state by applying random local changes of a few
// instances and exchanges between them, so its registers hold real
// conflicts and superseded versions.
func genStates(t *rapid.T, n int) []*State {
	states := make([]*State, n)
	for i := range states {
		states[i] = NewState()
	}
	seq := uint64(0)
	steps := rapid.IntRange(0, 40).Draw(t, "steps")
	for range steps {
		i := rapid.IntRange(0, n-1).Draw(t, "at")
		if rapid.Bool().Draw(t, "sync") {
			j := rapid.IntRange(0, n-1).Draw(t, "from")
			states[i].Merge(states[j].Delta(states[i].Summary()))
			continue
		}
		seq++
		k := Key{Tree: "t", Path: fmt.Sprintf("f%d", rapid.IntRange(0, 4).Draw(t, "key"))}
		f := File{Size: int64(rapid.IntRange(0, 3).Draw(t, "size")), Deleted: rapid.Bool().Draw(t, "del")}
		states[i].Local(fmt.Sprintf("r%d", i), seq, k, f)
	}
	return states
}

func merged(a *State, bs ...*State) *State {
	c := a.Clone()
	for _, b := range bs {
		c.Merge(b.Delta(nil))
	}
	return c
}

func TestMergeLaws(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := genStates(t, 3)
		a, b, c := s[0], s[1], s[2]
		if ab, ba := merged(a, b), merged(b, a); !ab.Equal(ba) || ab.summary.Compare(ba.summary) != Equal {
			t.Fatalf("merge not commutative:\n%v\n%v", dump(ab), dump(ba))
		}
		if l, r := merged(merged(a, b), c), merged(a, merged(b, c)); !l.Equal(r) {
			t.Fatalf("merge not associative:\n%v\n%v", dump(l), dump(r))
		}
		if aa := merged(a, a); !aa.Equal(a) {
			t.Fatalf("merge not idempotent:\n%v\n%v", dump(aa), dump(a))
		}
		// A delta against the receiver's summary does what the whole state does.
		if d, f := func() *State { x := b.Clone(); x.Merge(a.Delta(x.Summary())); return x }(), merged(b, a); !d.Equal(f) {
			t.Fatalf("delta merge differs from full merge:\n%v\n%v", dump(d), dump(f))
		}
	})
}

type inflightDelta struct {
	to int
	d  Delta
}

// TestConvergence runs random changes on replicas that exchange deltas
// over a network that loses, repeats and reorders messages, then lets
// them exchange without loss: all must end in the same state, which holds
// for each key exactly the versions no other version of it supersedes.
func TestConvergence(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(2, 5).Draw(t, "replicas")
		states := make([]*State, n)
		known := make([][]VersionVector, n) // known[i][j]: what i last heard j has
		for i := range states {
			states[i] = NewState()
			known[i] = make([]VersionVector, n)
		}
		created := map[Key][]Version{}
		var inflight []inflightDelta
		seq := uint64(0)
		steps := rapid.IntRange(1, 80).Draw(t, "steps")
		for range steps {
			switch rapid.IntRange(0, 3).Draw(t, "op") {
			case 0, 1: // a local change
				i := rapid.IntRange(0, n-1).Draw(t, "at")
				seq++
				k := Key{Tree: "t", Path: fmt.Sprintf("f%d", rapid.IntRange(0, 5).Draw(t, "key"))}
				f := File{Size: int64(rapid.IntRange(0, 3).Draw(t, "size")), Deleted: rapid.IntRange(0, 4).Draw(t, "del") == 0}
				if v, ok := states[i].Local(fmt.Sprintf("r%d", i), seq, k, f); ok {
					created[k] = append(created[k], v)
				}
			case 2: // i sends j what it believes j lacks
				i, j := rapid.IntRange(0, n-1).Draw(t, "from"), rapid.IntRange(0, n-1).Draw(t, "to")
				inflight = append(inflight, inflightDelta{to: j, d: states[i].Delta(known[i][j])})
				if rapid.Bool().Draw(t, "ack") { // j's answer tells i its summary
					known[i][j] = states[j].Summary()
				}
			case 3: // the network delivers, loses or repeats one message
				if len(inflight) == 0 {
					continue
				}
				m := rapid.IntRange(0, len(inflight)-1).Draw(t, "msg")
				msg := inflight[m]
				switch rapid.IntRange(0, 2).Draw(t, "fate") {
				case 0:
					inflight = append(inflight[:m], inflight[m+1:]...)
					states[msg.to].Merge(msg.d)
				case 1: // lost
					inflight = append(inflight[:m], inflight[m+1:]...)
				case 2: // delivered and kept for a repeat
					states[msg.to].Merge(msg.d)
				}
			}
		}
		// Heal: rounds of exchanges without loss, from what each knows.
		for range n {
			for i := range n {
				for j := range n {
					if i != j {
						states[j].Merge(states[i].Delta(known[i][j]))
						known[i][j] = states[j].Summary()
					}
				}
			}
		}
		for _, m := range inflight { // stragglers arrive late
			states[m.to].Merge(m.d)
		}
		for i := 1; i < n; i++ {
			if !states[i].Equal(states[0]) {
				t.Fatalf("replica %d differs from replica 0:\n%v\n%v", i, dump(states[i]), dump(states[0]))
			}
		}
		for k, vs := range created {
			var want []Version
			for _, v := range vs {
				top := true
				for _, w := range vs {
					if w.VV.Compare(v.VV) == After {
						top = false
					}
				}
				if top {
					want = append(want, v)
				}
			}
			got := states[0].Get(k)
			if len(got) != len(want) {
				t.Fatalf("key %v: %d versions, want the %d maximal ones: %v vs %v", k, len(got), len(want), got, want)
			}
			for _, w := range want {
				found := false
				for _, g := range got {
					found = found || (g.Origin == w.Origin && g.Counter == w.Counter)
				}
				if !found {
					t.Fatalf("key %v: maximal version %s:%d missing from %v", k, w.Origin, w.Counter, got)
				}
			}
		}
	})
}

func dump(s *State) string {
	d := s.Delta(nil)
	out := fmt.Sprintf("summary %v\n", d.Summary)
	for _, c := range d.Changes {
		out += fmt.Sprintf("  %s %s:%d %v del=%v size=%d\n", c.Key.Path, c.Origin, c.Counter, c.VV, c.Deleted, c.Size)
	}
	return out
}

func TestTombstoneCollection(t *testing.T) {
	a, b := NewState(), NewState()
	k := Key{"t", "x"}
	a.Local("a", 1, k, File{Size: 1})
	b.Merge(a.Delta(nil))
	a.Local("a", 2, k, File{Deleted: true})
	// b has not acknowledged the deletion: nothing is collected.
	if n := a.CollectTombstones([]VersionVector{b.Summary()}); n != 0 {
		t.Fatalf("collected %d tombstones before the peer saw them", n)
	}
	b.Merge(a.Delta(b.Summary()))
	// b writes concurrently... no: b saw the deletion. Now a concurrent
	// change of b that a has not seen blocks collection.
	c := NewState()
	c.Merge(a.Delta(nil))
	c.Local("c", 3, Key{"t", "y"}, File{Size: 5})
	if n := a.CollectTombstones([]VersionVector{b.Summary(), c.Summary()}); n != 0 {
		t.Fatalf("collected %d tombstones while a peer held changes this state lacks", n)
	}
	a.Merge(c.Delta(a.Summary()))
	if n := a.CollectTombstones([]VersionVector{b.Summary(), c.Summary()}); n != 1 {
		t.Fatalf("collected %d tombstones, want 1", n)
	}
	if a.Get(k) != nil || a.Tombstones() != 0 {
		t.Fatalf("tombstone still there: %v", a.Get(k))
	}
	// The old version arriving again (a late repeat) must not resurrect
	// the file at b, which still has the tombstone, and a's deltas to b
	// still converge.
	b.Merge(a.Delta(b.Summary()))
	if vs := b.Get(k); len(vs) != 1 || !vs[0].Deleted {
		t.Fatalf("b: %v, want the tombstone", vs)
	}
}
