package cluster

import (
	"io"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// blockFSM blocks in Apply until release is closed, after closing entered.
type blockFSM struct {
	entered, release chan struct{}
}

func (f *blockFSM) Apply(*raft.Log) any {
	close(f.entered)
	<-f.release
	return nil
}

func (*blockFSM) Snapshot() (raft.FSMSnapshot, error) { return recSnapshot(0), nil }
func (*blockFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

// TestShutdownAfterSelfRemovalWaits: a leader that removes itself shuts its
// raft down on its own; a later Shutdown().Error() must still wait for
// raft's goroutines, since the caller closes the stores they use next
// (Node.Close). Upstream answered the second call at once, with the FSM
// goroutine still applying.
func TestShutdownAfterSelfRemovalWaits(t *testing.T) {
	a1, t1 := raft.NewInmemTransport("n1")
	a2, t2 := raft.NewInmemTransport("n2")
	t1.Connect(a2, t2)
	t2.Connect(a1, t1)
	servers := raft.Configuration{Servers: []raft.Server{
		{Suffrage: raft.Voter, ID: "n1", Address: a1},
		{Suffrage: raft.Voter, ID: "n2", Address: a2},
	}}
	start := func(id raft.ServerID, trans *raft.InmemTransport, fsm raft.FSM, campaign bool) *raft.Raft {
		conf := raft.DefaultConfig()
		conf.LocalID = id
		conf.Logger = hclog.NewNullLogger()
		conf.HeartbeatTimeout, conf.ElectionTimeout = 100*time.Millisecond, 100*time.Millisecond
		conf.LeaderLeaseTimeout, conf.CommitTimeout = 50*time.Millisecond, 5*time.Millisecond
		if !campaign {
			// n1 is to win the first election.
			conf.HeartbeatTimeout, conf.ElectionTimeout = 10*time.Second, 10*time.Second
		}
		logs, snaps := raft.NewInmemStore(), raft.NewInmemSnapshotStore()
		if err := raft.BootstrapCluster(conf, logs, logs, snaps, trans, servers); err != nil {
			t.Fatal(err)
		}
		r, err := raft.NewRaft(conf, fsm, logs, logs, snaps, trans)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	fsm := &blockFSM{entered: make(chan struct{}), release: make(chan struct{})}
	released := false
	release := func() {
		if !released {
			released = true
			close(fsm.release)
		}
	}
	r1 := start("n1", t1, fsm, true)
	r2 := start("n2", t2, &recFSM{}, false)
	t.Cleanup(func() {
		release()
		_ = r1.Shutdown().Error()
		_ = r2.Shutdown().Error()
	})
	select {
	case <-r1.LeaderCh():
	case <-time.After(10 * time.Second):
		t.Fatal("n1 did not become the leader")
	}

	// The FSM goroutine is busy applying a command...
	r1.Apply([]byte("x"), 0)
	select {
	case <-fsm.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the command was not applied")
	}
	// ...when the leader removes itself and shuts its raft down (the
	// removal's future is answered by the FSM goroutine, after the command).
	r1.RemoveServer("n1", 0, 0)
	for deadline := time.Now().Add(10 * time.Second); r1.State() != raft.Shutdown; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("n1 is %v after removing itself, want Shutdown", r1.State())
		}
	}

	done := make(chan struct{})
	go func() {
		_ = r1.Shutdown().Error()
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("Shutdown().Error() returned while the FSM goroutine was still running")
	case <-time.After(300 * time.Millisecond):
	}
	release()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown().Error() did not return once the FSM goroutine could end")
	}
}
