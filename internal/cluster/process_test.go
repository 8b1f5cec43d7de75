package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/event"
)

// proc is one `semprop run` process of the multi-process test.
type proc struct {
	id, api, raft, dir, log string
	args                    []string
	cmd                     *exec.Cmd
	done                    chan struct{}
}

func (p *proc) start(t *testing.T, bin string) {
	t.Helper()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.done = make(chan struct{})
	go func() { p.cmd.Wait(); f.Close(); close(p.done) }()
}

func (p *proc) kill(sig syscall.Signal) {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) status(ctx context.Context) (Status, error) {
	var st Status
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.api+"/v1/cluster", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// TestProcesses runs clusters of three and five `semprop run` processes,
// SIGKILLs the leader under publishing load, restarts it, and checks every
// node's journal.
func TestProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs semprop processes")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "semprop")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/semprop/semprop/cmd/semprop")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("built semprop in %v", time.Since(start))
	t.Run("non-loopback-without-credentials", func(t *testing.T) {
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		for _, addr := range []string{"0.0.0.0:0", ":0"} {
			cmd := exec.CommandContext(rctx, bin, "run", "--data", t.TempDir(), "--listen", freeAddr(t), "--node-id", "x",
				"--raft-addr", addr, "--bootstrap")
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), "without cluster credentials") {
				t.Errorf("semprop run --raft-addr %s without credentials: err %v, output:\n%s\nwant a refusal", addr, err, out)
			}
		}
	})
	for _, size := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d-processes", size), func(t *testing.T) { testProcesses(ctx, t, bin, size) })
	}
}

// writeCreds writes a cluster CA and a member certificate for each id into
// dir (ca.pem, ID.pem, ID-key.pem).
func writeCreds(t *testing.T, dir string, ids ...string) {
	t.Helper()
	ca, err := GenerateCA("process test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		c, k, err := ca.Issue(id, []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, id+".pem"), c, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, id+"-key.pem"), k, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func testProcesses(ctx context.Context, t *testing.T, bin string, size int) {
	procs := startProcs(ctx, t, bin, t.TempDir(), size)

	// The flags took effect: the Raft port refuses a peer without a member
	// certificate.
	tr := outsider(t)
	vreq := &raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(procs[1].id), Addr: []byte(tr.LocalAddr())},
		Term: 1 << 20, LastLogIndex: 1 << 40, LastLogTerm: 1 << 20, LeadershipTransfer: true}
	var vresp raft.RequestVoteResponse
	if err := tr.RequestVote(raft.ServerID(procs[0].id), raft.ServerAddress(procs[0].raft), vreq, &vresp); err == nil {
		t.Fatalf("%s answered a vote request without a member certificate (granted %v): the cluster flags are not in effect", procs[0].id, vresp.Granted)
	}

	h := newHistory()
	var alive sync.Map // id -> bool
	for _, p := range procs {
		alive.Store(p.id, true)
	}
	lctx, lcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 3))
			for lctx.Err() == nil {
				p := procs[rng.IntN(len(procs))]
				if up, _ := alive.Load(p.id); up != true {
					continue
				}
				evs := make([]*event.Event, 20)
				h.mu.Lock()
				for i := range evs {
					evs[i] = &event.Event{ID: event.NewID(), Type: "test.proc", Source: "test://proc", Subject: "/p"}
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
					if ce, ok := err.(*client.Error); ok {
						h.errs[fmt.Sprintf("HTTP %d", ce.Status)]++
					}
				}
				h.mu.Unlock()
				if err != nil {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	defer func() { lcancel(); wg.Wait() }()
	waitFor(t, 30*time.Second, "load", func() bool { return h.numAcked() >= 500 })

	st, err := procs[0].status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var victim *proc
	for _, p := range procs {
		if p.id == st.Leader {
			victim = p
		}
	}
	if victim == nil {
		t.Fatalf("no leader in %+v", st)
	}
	alive.Store(victim.id, false)
	victim.kill(syscall.SIGKILL)
	killedAt := time.Now()
	before := h.numAcked()
	waitFor(t, 30*time.Second, "writes to resume after the SIGKILL", func() bool { return h.numAcked() >= before+500 })
	t.Logf("leader %s SIGKILLed; writes resumed, %d more acknowledged in %v", victim.id, h.numAcked()-before, time.Since(killedAt))
	victim.start(t, bin)
	restarted := time.Now()
	var others *proc
	for _, p := range procs {
		if p != victim {
			others = p
		}
	}
	d := waitFor(t, 60*time.Second, "the restarted node to catch up", func() bool {
		sv, err1 := victim.status(ctx)
		so, err2 := others.status(ctx)
		return err1 == nil && err2 == nil && sv.Ready && sv.DurableSeq >= so.LastSeq && so.LastSeq > 0
	})
	t.Logf("%s restarted and caught up in %v", victim.id, d)
	_ = restarted
	alive.Store(victim.id, true)
	waitFor(t, 30*time.Second, "load on the restarted cluster", func() bool { return h.numAcked() >= before+1000 })
	lcancel()
	wg.Wait()

	// Every node converges to the same journal.
	checkProcs(ctx, t, procs, h)
}

// replayAll reads every event of a node over HTTP, checking contiguous seqs.
func replayAll(ctx context.Context, t *testing.T, url string) []event.ID {
	t.Helper()
	c := client.New(url, "")
	var ids []event.ID
	after := uint64(0)
	for {
		n := 0
		last, err := c.Replay(ctx, client.Selector{}, after, 5000, func(ev *event.Event) error {
			if ev.Seq != uint64(len(ids)+1) {
				return fmt.Errorf("seq %d after %d", ev.Seq, len(ids))
			}
			ids = append(ids, ev.ID)
			n++
			return nil
		})
		if err != nil {
			t.Fatalf("replay %s: %v", url, err)
		}
		if n == 0 {
			return ids
		}
		after = last
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// errSummary shortens an error to its kind for the test log.
func errSummary(err error) string {
	s := err.Error()
	for _, k := range []string{"no quorum", "not ready", "connection refused", "EOF", "deadline", "clock"} {
		if strings.Contains(s, k) {
			return k
		}
	}
	if len(s) > 60 {
		s = s[:60]
	}
	return s
}
