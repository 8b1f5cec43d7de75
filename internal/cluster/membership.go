package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"

	"github.com/hashicorp/raft"
)

// MemberStatus is one member as seen from the node that reports it.
type MemberStatus struct {
	Member
	Suffrage string `json:"suffrage"` // voter, nonvoter
	Self     bool   `json:"self,omitempty"`
	Leader   bool   `json:"leader,omitempty"`
	// AppliedIndex and LastSeq: the member's FSM and journal position (from
	// the last probe for peers). Lag is CommitIndex minus AppliedIndex.
	AppliedIndex uint64 `json:"applied_index"`
	LastSeq      uint64 `json:"last_seq"`
	Lag          uint64 `json:"lag"`
	// OffsetNS ± ErrorNS is the peer's clock minus ours, from the probe with
	// the smallest round trip (RTTNS) among the last few.
	OffsetNS int64     `json:"offset_ns"`
	ErrorNS  int64     `json:"offset_error_ns"`
	RTTNS    int64     `json:"rtt_ns"`
	LastSeen time.Time `json:"last_seen,omitzero"`
	LastErr  string    `json:"last_error,omitempty"`
	Refused  string    `json:"refused,omitempty"`
}

// Status is a node's view of the cluster.
type Status struct {
	ID           string         `json:"id"`
	State        string         `json:"state"`
	Leader       string         `json:"leader,omitempty"`
	Term         uint64         `json:"term"`
	CommitIndex  uint64         `json:"commit_index"`
	AppliedIndex uint64         `json:"applied_index"`
	LastIndex    uint64         `json:"last_index"`
	LastSeq      uint64         `json:"last_seq"`
	DurableSeq   uint64         `json:"durable_seq"`
	Ready        bool           `json:"ready"`
	Reason       string         `json:"reason,omitempty"`
	Restores     uint64         `json:"snapshot_restores"`
	Fetched      uint64         `json:"records_fetched"`
	Members      []MemberStatus `json:"members"`
}

// Status returns this node's view of the cluster: Raft state, indexes,
// every member with its applied index, lag and clock offset.
func (n *Node) Status() Status {
	ready, reason := n.Ready()
	st := Status{
		ID: n.cfg.ID, State: n.r.State().String(), Term: n.r.CurrentTerm(),
		CommitIndex: n.r.CommitIndex(), AppliedIndex: n.AppliedIndex(), LastIndex: n.r.LastIndex(),
		LastSeq: n.j.LastSeq(), DurableSeq: n.j.DurableSeq(), Ready: ready, Reason: reason,
		Restores: n.restores.Load(), Fetched: n.fetched.Load(),
	}
	_, leaderID := n.r.LeaderWithID()
	st.Leader = string(leaderID)
	var servers []raft.Server
	if f := n.r.GetConfiguration(); f.Error() == nil {
		servers = f.Configuration().Servers
	}
	for _, s := range servers {
		ms := MemberStatus{
			Member:   Member{ID: string(s.ID), RaftAddr: string(s.Address)},
			Suffrage: map[raft.ServerSuffrage]string{raft.Voter: "voter", raft.Nonvoter: "nonvoter", raft.Staging: "staging"}[s.Suffrage],
			Self:     string(s.ID) == n.cfg.ID,
			Leader:   s.ID == leaderID,
		}
		if m, ok := n.fsm.member(ms.ID); ok {
			ms.APIURL = m.APIURL
		}
		if ms.Self {
			ms.AppliedIndex, ms.LastSeq, ms.LastSeen = st.AppliedIndex, st.LastSeq, time.Now()
		} else if p, ok := n.peers.snapshot(ms.ID); ok {
			ms.AppliedIndex, ms.LastSeq, ms.LastSeen, ms.LastErr, ms.Refused = p.applied, p.lastSeq, p.lastSeen, p.lastErr, p.refused
			if b, ok := p.best(); ok {
				ms.OffsetNS, ms.ErrorNS, ms.RTTNS = b.offset, b.delay/2, b.delay
			}
		}
		if st.CommitIndex > ms.AppliedIndex {
			ms.Lag = st.CommitIndex - ms.AppliedIndex
		}
		st.Members = append(st.Members, ms)
	}
	sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].ID < st.Members[j].ID })
	return st
}

func (n *Node) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.Status())
}

// Join adds m as a voter. On a follower it is forwarded to the leader. The
// leader first probes m's Raft port (with Credentials, m must answer with
// a member certificate) and clock (ErrClockOffset if beyond the maximum),
// then adds it to the Raft configuration and replicates its metadata.
func (n *Node) Join(ctx context.Context, m Member) error {
	if m.ID == "" || m.RaftAddr == "" || m.APIURL == "" {
		return errors.New("cluster: join needs id, raft_addr and api_url")
	}
	if !n.IsLeader() {
		ld, err := n.leaderPeer(ctx)
		if err != nil {
			return err
		}
		return n.post(ctx, ld.RaftAddr, "/v1/cluster/join", m, nil)
	}
	if m.ID != n.cfg.ID {
		if err := n.checkClock(ctx, m.ID, m.RaftAddr); err != nil {
			return err
		}
	}
	if err := n.r.AddVoter(raft.ServerID(m.ID), raft.ServerAddress(m.RaftAddr), 0, n.cfg.ForwardTimeout).Error(); err != nil {
		return raftErr(err)
	}
	return n.applyMeta(kindMemberSet, m)
}

// Leave removes member id (its metadata, then its Raft membership). On a
// follower it is forwarded to the leader. The leader does not remove
// itself: it first hands leadership to another voter and forwards the
// leave to it (ErrLastVoter if there is none). An empty id is ErrNoID, an
// id that is not a member ErrUnknownMember. Removal is idempotent, so an
// attempt that failed for want of a stable leader is retried for up to
// Config.ForwardTimeout.
func (n *Node) Leave(ctx context.Context, id string) error {
	if id == "" {
		return ErrNoID
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ForwardTimeout)
	defer cancel()
	for tried := false; ; tried = true {
		err := n.leaveOnce(ctx, id)
		if err == nil || (tried && errors.Is(err, ErrUnknownMember)) {
			// An earlier attempt whose outcome was unknown did remove it.
			return nil
		}
		if !errors.Is(err, ErrNoQuorum) && !errors.Is(err, ErrNotLeader) {
			return err
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return err
		}
	}
}

func (n *Node) leaveOnce(ctx context.Context, id string) error {
	if !n.IsLeader() {
		ld, err := n.leaderPeer(ctx)
		if err != nil {
			return err
		}
		if ld.ID == n.cfg.ID {
			return fmt.Errorf("%w: leadership is changing", ErrNoQuorum)
		}
		return n.post(ctx, ld.RaftAddr, "/v1/cluster/leave", map[string]string{"id": id}, nil)
	}
	servers, err := n.servers()
	if err != nil {
		return err
	}
	voters, found := 0, false
	for _, s := range servers {
		found = found || string(s.ID) == id
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	if _, meta := n.fsm.member(id); !found && !meta {
		return fmt.Errorf("%w: %q", ErrUnknownMember, id)
	}
	if id == n.cfg.ID {
		if voters < 2 {
			return ErrLastVoter
		}
		if err := n.handOver(ctx); err != nil {
			return err
		}
		return fmt.Errorf("%w: handed leadership over; leaving through the new leader", ErrNotLeader)
	}
	if err := n.applyMeta(kindMemberDel, Member{ID: id}); err != nil {
		return err
	}
	if err := n.r.RemoveServer(raft.ServerID(id), 0, n.cfg.ForwardTimeout).Error(); err != nil {
		return raftErr(err)
	}
	return nil
}

// handOver transfers leadership to another voter and waits until this node
// knows the new leader.
func (n *Node) handOver(ctx context.Context) error {
	if err := n.r.LeadershipTransfer().Error(); err != nil {
		return fmt.Errorf("%w: hand leadership over before leaving: %v", ErrNoQuorum, err)
	}
	deadline := time.Now().Add(n.cfg.LeaderWait)
	for {
		if ld, ok := n.Leader(); ok && ld.ID != n.cfg.ID && !n.IsLeader() {
			n.log.Info("cluster: handed leadership over before leaving", "leader", ld.ID)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: no new leader after the handover", ErrNoQuorum)
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (n *Node) servers() ([]raft.Server, error) {
	f := n.r.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, raftErr(err)
	}
	return f.Configuration().Servers, nil
}

func (n *Node) applyMeta(kind byte, m Member) error {
	f := n.r.Apply(memberEntry(kind, m), n.cfg.ForwardTimeout)
	if err := f.Error(); err != nil {
		return raftErr(err)
	}
	if res, ok := f.Response().(applyResult); ok && res.err != nil {
		return res.err
	}
	return nil
}

func (n *Node) handleJoin(w http.ResponseWriter, r *http.Request) {
	var m Member
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&m); err != nil {
		writeErr(w, http.StatusBadRequest, "", err)
		return
	}
	if err := n.Join(r.Context(), m); err != nil {
		writeAnyErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"joined": m.ID})
}

func (n *Node) handleLeave(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		writeErr(w, http.StatusBadRequest, "", err)
		return
	}
	if err := n.Leave(r.Context(), req.ID); err != nil {
		writeAnyErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"left": req.ID})
}

func (n *Node) self() Member {
	return Member{ID: n.cfg.ID, RaftAddr: n.cfg.RaftAddr, APIURL: n.cfg.APIURL}
}

// joinLoop asks the member at url to add this node, until it succeeds or
// the node closes.
func (n *Node) joinLoop(ctx context.Context, url string) {
	for attempt := 0; ; attempt++ {
		jctx, cancel := context.WithTimeout(ctx, n.cfg.ForwardTimeout)
		err := n.postVia(jctx, n.api, url, "/v1/cluster/join", n.self(), nil)
		cancel()
		if err == nil {
			n.log.Info("cluster: joined", "via", url)
			return
		}
		lvl := n.log.Warn
		if errors.Is(err, ErrClockOffset) {
			lvl = n.log.Error
		}
		lvl("cluster: join failed, retrying", "via", url, "attempt", attempt, "err", err)
		select {
		case <-time.After(min(time.Duration(attempt+1)*200*time.Millisecond, 2*time.Second)):
		case <-ctx.Done():
			return
		}
	}
}

// announceLoop keeps this node's metadata (API URL, Raft address) in the
// replicated membership current: after a bootstrap, or a restart on a new
// API address, it asks the leader to record it.
func (n *Node) announceLoop(ctx context.Context) {
	t := time.NewTicker(min(n.cfg.PingInterval, 500*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if m, ok := n.fsm.member(n.cfg.ID); ok && m == n.self() {
			continue
		}
		if !n.inConfiguration() {
			continue
		}
		var err error
		if n.IsLeader() {
			err = n.applyMeta(kindMemberSet, n.self())
		} else if ld, ok := n.Leader(); ok && ld.RaftAddr != "" && ld.ID != n.cfg.ID {
			actx, cancel := context.WithTimeout(ctx, n.cfg.ForwardTimeout)
			err = n.post(actx, ld.RaftAddr, "/v1/cluster/join", n.self(), nil)
			cancel()
		}
		if err != nil {
			n.log.Debug("cluster: announce", "err", err)
		}
	}
}

func (n *Node) inConfiguration() bool {
	servers, err := n.servers()
	if err != nil {
		return false
	}
	for _, s := range servers {
		if string(s.ID) == n.cfg.ID {
			return true
		}
	}
	return false
}
