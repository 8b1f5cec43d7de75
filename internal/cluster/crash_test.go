package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/event"
)

// TestCrashRounds SIGKILLs a random node of a three-process cluster at a
// random moment under publishing load (lone events and batches, on every
// node), restarts it, and does so for 100 rounds (SEMPROP_CRASH_ROUNDS
// overrides). Acknowledgements come after the quorum commit and the apply,
// before the journal's fsync, so a killed node often loses journal records
// that were acknowledged; it must get them back from the Raft log. At the
// end every node must hold every acknowledged event, at its acknowledged
// seq, and the same events in the same order.
func TestCrashRounds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs semprop processes")
	}
	rounds := 100
	if v := os.Getenv("SEMPROP_CRASH_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("SEMPROP_CRASH_ROUNDS=%q: want a positive number", v)
		}
		rounds = n
	}
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "semprop")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/semprop/semprop/cmd/semprop")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	procs := startProcs(ctx, t, bin, dir, 3)

	h := newHistory()
	var alive sync.Map // id -> bool
	for _, p := range procs {
		alive.Store(p.id, true)
	}
	lctx, lcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			size := 1 // workers 0-3 publish lone events, 4-5 batches
			if w >= 4 {
				size = 25
			}
			for lctx.Err() == nil {
				p := procs[rng.IntN(len(procs))]
				if up, _ := alive.Load(p.id); up != true {
					continue
				}
				evs := make([]*event.Event, size)
				h.mu.Lock()
				for i := range evs {
					evs[i] = &event.Event{ID: event.NewID(), Type: "test.crash", Source: "test://crash", Subject: "/c"}
					h.attempted[evs[i].ID] = true
				}
				h.mu.Unlock()
				pctx, pcancel := context.WithTimeout(lctx, 5*time.Second)
				seqs, err := client.New("http://"+p.api, "").PublishBatch(pctx, evs)
				pcancel()
				h.mu.Lock()
				if err == nil && len(seqs) == len(evs) {
					for i, ev := range evs {
						h.acked[ev.ID] = seqs[i]
					}
				} else if err != nil {
					h.errs[errSummary(err)]++
				}
				h.mu.Unlock()
				if err != nil {
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
	defer func() { lcancel(); wg.Wait() }()
	waitFor(t, 30*time.Second, "load", func() bool { return h.numAcked() >= 200 })

	rng := rand.New(rand.NewPCG(7, 7))
	start := time.Now()
	for r := range rounds {
		victim := procs[rng.IntN(len(procs))]
		time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond) // any moment
		before := h.numAcked()
		alive.Store(victim.id, false)
		victim.kill(syscall.SIGKILL)
		victim.start(t, bin)
		waitFor(t, 60*time.Second, fmt.Sprintf("round %d: %s ready after the SIGKILL", r, victim.id), func() bool {
			st, err := victim.status(ctx)
			return err == nil && st.Ready
		})
		alive.Store(victim.id, true)
		waitFor(t, 60*time.Second, fmt.Sprintf("round %d: writes after restarting %s", r, victim.id), func() bool {
			return h.numAcked() > before
		})
	}
	t.Logf("%d rounds in %v", rounds, time.Since(start).Round(time.Millisecond))
	lcancel()
	wg.Wait()
	checkProcs(ctx, t, procs, h)
}

// startProcs starts a cluster of size `semprop run` processes with member
// certificates under dir and waits until every member is known.
func startProcs(ctx context.Context, t *testing.T, bin, dir string, size int) []*proc {
	t.Helper()
	procs := make([]*proc, size)
	var ids []string
	for i := range procs {
		ids = append(ids, fmt.Sprintf("p%d", i))
	}
	writeCreds(t, dir, ids...)
	for i := range procs {
		p := &proc{id: ids[i], api: freeAddr(t), raft: freeAddr(t), dir: filepath.Join(dir, ids[i])}
		p.log = p.dir + ".log"
		p.args = []string{"run", "--data", p.dir, "--listen", p.api, "--node-id", p.id, "--raft-addr", p.raft, "--log-level", "warn",
			"--cluster-ca", filepath.Join(dir, "ca.pem"), "--cluster-cert", filepath.Join(dir, p.id+".pem"), "--cluster-key", filepath.Join(dir, p.id+"-key.pem")}
		if i == 0 {
			p.args = append(p.args, "--bootstrap")
		} else {
			p.args = append(p.args, "--join", "http://"+procs[0].api)
		}
		procs[i] = p
	}
	t.Cleanup(func() {
		for _, p := range procs {
			p.kill(syscall.SIGTERM)
		}
		if t.Failed() {
			for _, p := range procs {
				b, _ := os.ReadFile(p.log)
				t.Logf("%s log (tail):\n%s", p.id, tail(b, 3000))
			}
		}
	})
	procs[0].start(t, bin)
	waitFor(t, 30*time.Second, "p0 to lead", func() bool {
		st, err := procs[0].status(ctx)
		return err == nil && st.Ready
	})
	for _, p := range procs[1:] {
		p.start(t, bin)
	}
	waitFor(t, 30*time.Second, "all members", func() bool {
		st, err := procs[0].status(ctx)
		n := 0
		for _, m := range st.Members {
			if m.APIURL != "" {
				n++
			}
		}
		return err == nil && n == size
	})
	return procs
}

// checkProcs waits until every node's journal is durable at the same seq,
// then checks that all hold the same events in the same order, that every
// event was published once, and that every acknowledged event is there at
// its acknowledged seq.
func checkProcs(ctx context.Context, t *testing.T, procs []*proc, h *history) {
	t.Helper()
	// A publish cancelled with the load may still be committing: wait
	// until every node is at the same position for half a second.
	var want uint64
	var since time.Time
	waitFor(t, 60*time.Second, "all nodes at the same position", func() bool {
		var seqs []uint64
		for _, p := range procs {
			st, err := p.status(ctx)
			if err != nil {
				return false
			}
			seqs = append(seqs, st.DurableSeq, st.LastSeq)
		}
		for _, s := range seqs {
			if s != seqs[0] {
				return false
			}
		}
		if seqs[0] != want {
			want, since = seqs[0], time.Now()
		}
		return want > 0 && time.Since(since) >= 500*time.Millisecond
	})
	var ref []event.ID
	for _, p := range procs {
		ids := replayAll(ctx, t, "http://"+p.api)
		if ref == nil {
			ref = ids
		} else if len(ids) != len(ref) {
			t.Fatalf("%s has %d events, want %d", p.id, len(ids), len(ref))
		} else {
			for i := range ids {
				if ids[i] != ref[i] {
					t.Fatalf("seq %d differs on %s", i+1, p.id)
				}
			}
		}
	}
	if uint64(len(ref)) != want {
		t.Fatalf("replay returned %d events, durable seq %d", len(ref), want)
	}
	pos := map[event.ID]uint64{}
	for i, id := range ref {
		if _, dup := pos[id]; dup {
			t.Fatalf("event %v twice", id)
		}
		if !h.attempted[id] {
			t.Fatalf("seq %d: event %v never published", i+1, id)
		}
		pos[id] = uint64(i + 1)
	}
	missing := 0
	for id, seq := range h.acked {
		if pos[id] != seq {
			missing++
			if missing <= 5 {
				t.Errorf("acknowledged event %v: acked seq %d, journal seq %d", id, seq, pos[id])
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged events missing or moved", missing, len(h.acked))
	}
	t.Logf("%d processes agree on %d events; %d acknowledged; errors %v", len(procs), len(ref), len(h.acked), h.errs)
}
