package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/semprop/semprop/event"
)

// forgedEntry is the entry an attacker wants committed: a kernel-boundary
// write of /etc/shadow.
func forgedEntry(t *testing.T) (event.ID, []byte) {
	t.Helper()
	ev := &event.Event{ID: event.NewID(), Type: "fs.write", Source: "semprop://victim/kernel", Subject: "/etc/shadow",
		Attrs: []event.Attr{{Key: "boundary", Value: "kernel"}}}
	b, err := appendBatch(nil, 7, event.HLC{Wall: time.Now().UnixNano()}, []*event.Event{ev})
	if err != nil {
		t.Fatal(err)
	}
	return ev.ID, b
}

// journalHas reports whether the node's journal holds an event with id.
func journalHas(t *testing.T, tn *tnode, id event.ID) bool {
	t.Helper()
	for _, got := range readJournal(t, tn.id, tn.j) {
		if got == id {
			return true
		}
	}
	return false
}

// clusterState is what an attack must not change.
type clusterState struct {
	leader     string
	term       uint64
	lastIndex  []uint64
	lastSeq    []uint64
	membersLen int
}

func observe(c *tcluster) clusterState {
	st := c.node(0).n.Status()
	s := clusterState{leader: st.Leader, term: st.Term, membersLen: len(st.Members)}
	for _, tn := range c.live() {
		s.lastIndex = append(s.lastIndex, tn.n.Raft().LastIndex())
		s.lastSeq = append(s.lastSeq, tn.j.LastSeq())
	}
	return s
}

// outsider is a process that speaks raft's wire protocol (plain TCP,
// msgpack RPCs) without any cluster credentials.
func outsider(t *testing.T) *raft.NetworkTransport {
	t.Helper()
	tr, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 2*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// TestOutsiderRaftRefused: a process that can reach the Raft port but has
// no member certificate can neither append an entry (it would be applied to
// the journal of the follower it reached) nor depose the leader with a vote
// request carrying a higher term.
func TestOutsiderRaftRefused(t *testing.T) {
	c := newCluster(t, 3, nil)
	li := c.waitLeader(10 * time.Second)
	time.Sleep(300 * time.Millisecond) // membership metadata settles
	before := observe(c)
	id, data := forgedEntry(t)
	tr := outsider(t)
	hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("intruder"), Addr: []byte(tr.LocalAddr())}

	for i, tn := range c.live() {
		if i == li {
			continue
		}
		last := tn.n.Raft().LastIndex()
		var prev raft.Log
		if err := tn.n.wal.GetLog(last, &prev); err != nil {
			t.Fatal(err)
		}
		req := &raft.AppendEntriesRequest{RPCHeader: hdr, Term: before.term, PrevLogEntry: last, PrevLogTerm: prev.Term,
			Entries:           []*raft.Log{{Index: last + 1, Term: before.term, Type: raft.LogCommand, Data: data}},
			LeaderCommitIndex: last + 1}
		var resp raft.AppendEntriesResponse
		err := tr.AppendEntries(raft.ServerID(tn.id), raft.ServerAddress(tn.addr), req, &resp)
		if err == nil {
			t.Errorf("forged AppendEntries to %s: accepted (success %v); want the connection refused", tn.id, resp.Success)
		}
	}
	// A vote request in a much later term, as a member (spoofed ID) that
	// claims a leadership transfer, would make the leader step down.
	victim := c.node(li)
	spoofed := c.node((li + 1) % 3)
	vreq := &raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(spoofed.id), Addr: []byte(tr.LocalAddr())},
		Term: before.term + 100, LastLogIndex: 1 << 40, LastLogTerm: before.term + 99, LeadershipTransfer: true}
	var vresp raft.RequestVoteResponse
	if err := tr.RequestVote(raft.ServerID(victim.id), raft.ServerAddress(victim.addr), vreq, &vresp); err == nil {
		t.Errorf("forged RequestVote to the leader: answered (granted %v, term %d); want the connection refused", vresp.Granted, vresp.Term)
	}

	time.Sleep(500 * time.Millisecond)
	refused := uint64(0)
	for _, tn := range c.live() {
		if journalHas(t, tn, id) {
			t.Errorf("%s: the forged fs.write of /etc/shadow is in the journal", tn.id)
		}
		refused += tn.n.stream.refused.Load()
	}
	if refused < 3 {
		t.Errorf("%d refused connections counted, want at least 3 (two appends, one vote)", refused)
	}
	after := observe(c)
	if after.leader != before.leader || after.term != before.term {
		t.Errorf("leader %s term %d after the attack, want %s term %d", after.leader, after.term, before.leader, before.term)
	}
	for i := range after.lastSeq {
		if after.lastSeq[i] != before.lastSeq[i] || after.lastIndex[i] != before.lastIndex[i] {
			t.Errorf("node %d: last index %d seq %d after the attack, want %d and %d", i, after.lastIndex[i], after.lastSeq[i], before.lastIndex[i], before.lastSeq[i])
		}
	}
}

// TestForgedForwardRefused: the API's cluster routes do not take a
// follower's batch from anyone who can reach the API.
func TestForgedForwardRefused(t *testing.T) {
	c := newCluster(t, 3, nil)
	li := c.waitLeader(10 * time.Second)
	id, data := forgedEntry(t)
	for _, tn := range c.live() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, tn.url+"/v1/cluster/forward", bytes.NewReader(data))
		resp, err := http.DefaultClient.Do(req)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("%s: forged POST /v1/cluster/forward: %s %s, want refused", tn.id, resp.Status, body)
		}
	}
	// The Raft port does not serve the internal routes to a client without
	// a member certificate either.
	ld := c.node(li)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+ld.addr+"/v1/cluster/forward", bytes.NewReader(data))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("forged POST to the raft port: %s %s, want refused", resp.Status, body)
		}
	}
	time.Sleep(300 * time.Millisecond)
	for _, tn := range c.live() {
		if journalHas(t, tn, id) {
			t.Errorf("%s: the forged event is in the journal", tn.id)
		}
	}
}

// TestLeaveNeedsID: POST /v1/cluster/leave with {} does not remove the
// node it reached (here the leader).
func TestLeaveNeedsID(t *testing.T) {
	c := newCluster(t, 3, nil)
	li := c.waitLeader(10 * time.Second)
	ld := c.node(li)
	resp, err := http.Post(ld.url+"/v1/cluster/leave", "application/json", bytes.NewReader([]byte("{}")))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("leave {}: %s %s, want 400", resp.Status, body)
	}
	time.Sleep(300 * time.Millisecond)
	if st := ld.n.Status(); len(st.Members) != 3 {
		t.Errorf("after leave {}: %d members, want 3", len(st.Members))
	}
}

// TestNonLoopbackRaftAddrRefused: without cluster credentials a node does
// not listen for Raft on an address other hosts can reach.
func TestNonLoopbackRaftAddrRefused(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0"} {
		c := &tcluster{t: t, nw: newNetwork(), dirs: []string{t.TempDir()}, addrs: []string{addr}, apis: []string{""}, nodes: []*tnode{nil},
			cfg: func(cfg *Config) { cfg.Credentials = nil }}
		_, err := c.tryStart(0, true, "")
		if !errors.Is(err, ErrInsecure) {
			t.Errorf("raft address %q without credentials: err %v, want ErrInsecure", addr, err)
		}
		if err == nil {
			c.stop(0)
			t.Errorf("raft address %q without credentials: started, want refused", addr)
		}
	}
}

// TestLoopbackPlaintext: without credentials a cluster on loopback
// addresses still works (development and tests), internal requests
// included (forwarded writes, probes).
func TestLoopbackPlaintext(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) { cfg.Credentials = nil })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var first []*event.Event
	for i := range 3 {
		ev := &event.Event{Type: "test.plain"}
		if _, err := c.node(i).m.Publish(ctx, ev); err != nil {
			t.Fatalf("publish on n%d: %v", i, err)
		}
		first = append(first, ev)
	}
	l := c.startLoad(2, 10)
	l.h.mu.Lock()
	for _, ev := range first {
		l.h.attempted[ev.ID], l.h.acked[ev.ID] = true, ev.Seq
	}
	l.h.mu.Unlock()
	waitAcked(t, l, 100, 10*time.Second)
	l.stop()
	c.check(l.h)
}

// foreignCreds are credentials issued by a CA that is not the cluster's.
func foreignCreds(t *testing.T, id string) *Credentials {
	t.Helper()
	ca, err := GenerateCA("another CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cr, err := ca.Credentials(id)
	if err != nil {
		t.Fatal(err)
	}
	return cr
}

// foreignTransport is a raft transport whose TLS certificate comes from
// another CA; trustAny makes it accept any server certificate, so that
// only the server's check of the client certificate stands in the way.
func foreignTransport(t *testing.T, id string, trustAny bool) *raft.NetworkTransport {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var d net.Dialer
	s := newStreamLayer(ctx, ln, ln.Addr().String(), foreignCreds(t, id), d.DialContext, quietLog)
	if trustAny {
		s.client.VerifyConnection = nil
	}
	tr := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: s, MaxPool: 1, Timeout: 2 * time.Second})
	t.Cleanup(func() { tr.Close(); cancel() })
	return tr
}

// TestForeignCertificateRefused: a certificate from another CA is no
// member certificate: raft RPCs and internal requests presenting one are
// refused, and a node holding one cannot join.
func TestForeignCertificateRefused(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) {
		if cfg.ID == "n3" {
			cfg.Credentials = foreignCreds(t, "n3")
		}
	})
	li := c.waitLeader(10 * time.Second)
	time.Sleep(300 * time.Millisecond)
	before := observe(c)
	victim := c.node(li)
	for _, trustAny := range []bool{false, true} {
		tr := foreignTransport(t, "n1", trustAny)
		vreq := &raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(c.id((li + 1) % 3)), Addr: []byte(tr.LocalAddr())},
			Term: before.term + 100, LastLogIndex: 1 << 40, LastLogTerm: before.term + 99, LeadershipTransfer: true}
		var vresp raft.RequestVoteResponse
		if err := tr.RequestVote(raft.ServerID(victim.id), raft.ServerAddress(victim.addr), vreq, &vresp); err == nil {
			t.Errorf("RequestVote with a foreign certificate (trust any server %v): answered (granted %v)", trustAny, vresp.Granted)
		}
	}
	// Internal HTTP with a foreign client certificate, and with none.
	foreign := foreignCreds(t, "n1")
	for name, conf := range map[string]*tls.Config{
		"foreign certificate": {MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, Certificates: []tls.Certificate{foreign.cert}},
		"no certificate":      {MinVersion: tls.VersionTLS13, InsecureSkipVerify: true},
	} {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: conf}}
		_, data := forgedEntry(t)
		resp, err := hc.Post("https://"+victim.addr+"/v1/cluster/forward", "application/octet-stream", bytes.NewReader(data))
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			t.Errorf("internal forward with %s: %s %s, want the handshake refused", name, resp.Status, body)
		}
		hc.CloseIdleConnections()
	}
	// A node whose certificate another CA issued asks to join: the
	// leader's probe of its Raft port fails, and it never becomes a member.
	c.addSlot()
	c.start(3, false, c.node(li).url)
	time.Sleep(3 * time.Second)
	if st := c.node(c.waitLeader(10 * time.Second)).n.Status(); len(st.Members) != 3 {
		t.Errorf("after a join with a foreign certificate: %d members, want 3", len(st.Members))
	}
	if ok, _ := c.node(3).n.Ready(); ok {
		t.Errorf("the node with a foreign certificate is ready")
	}
	after := observe(c)
	if after.term != before.term || after.leader != before.leader {
		t.Errorf("leader %s term %d after the attempts, want %s term %d", after.leader, after.term, before.leader, before.term)
	}
}

// TestLeaveLeader: removing the leader by its ID hands leadership over
// first; the cluster keeps a leader and the old leader is gone.
func TestLeaveLeader(t *testing.T) {
	c := newCluster(t, 3, nil)
	li := c.waitLeader(10 * time.Second)
	old := c.node(li)
	via := c.node((li + 1) % 3)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := http.Post(via.url+"/v1/cluster/leave", "application/json", bytes.NewReader([]byte(`{"id":"`+old.id+`"}`)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("leave the leader %s: %s %s", old.id, resp.Status, body)
	}
	waitFor(t, 15*time.Second, "a new leader with two members", func() bool {
		for _, tn := range c.live() {
			if tn != old && tn.n.IsLeader() {
				st := tn.n.Status()
				return len(st.Members) == 2 && st.Leader != old.id
			}
		}
		return false
	})
	for _, tn := range c.live() {
		if tn == old {
			continue
		}
		if _, err := tn.m.Publish(ctx, &event.Event{Type: "test.after-leave"}); err != nil {
			t.Errorf("publish on %s after the leader left: %v", tn.id, err)
		}
	}
	// Unknown IDs are refused, not silently accepted.
	resp, err = http.Post(via.url+"/v1/cluster/leave", "application/json", bytes.NewReader([]byte(`{"id":"nope"}`)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("leave of an unknown member: %s, want 404", resp.Status)
	}
}

// TestLastVoterCannotLeave: a one-node cluster's leader has no one to hand
// over to.
func TestLastVoterCannotLeave(t *testing.T) {
	c := newCluster(t, 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.node(0).n.Leave(ctx, "n0"); !errors.Is(err, ErrLastVoter) {
		t.Errorf("Leave of the only voter: %v, want ErrLastVoter", err)
	}
}

// TestIdleConnectionsBounded: connections to the Raft port that never
// complete a handshake hold at most maxPending slots; beyond that they are
// closed at once and counted, and the cluster keeps committing.
func TestIdleConnectionsBounded(t *testing.T) {
	c := newCluster(t, 3, nil)
	li := c.waitLeader(10 * time.Second)
	victim := c.node(li)
	var conns []net.Conn
	t.Cleanup(func() {
		for _, cn := range conns {
			cn.Close()
		}
	})
	for range maxPending + 8 {
		cn, err := net.Dial("tcp", victim.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, cn)
	}
	waitFor(t, 5*time.Second, "the connections beyond the bound to be refused", func() bool {
		return victim.n.stream.refused.Load() >= 8
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 3 {
		if _, err := c.node(i).m.Publish(ctx, &event.Event{Type: "test.idle"}); err != nil {
			t.Errorf("publish on n%d with the leader's handshake slots taken: %v", i, err)
		}
	}
}
