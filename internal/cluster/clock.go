package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// offsetSample is one NTP-style exchange with a peer: t0 request sent
// (local clock), t1 request received and t2 reply sent (peer clock), t3
// reply received (local clock). offset = ((t1-t0)+(t2-t3))/2 is how far the
// peer's clock is ahead of ours; delay = (t3-t0)-(t2-t1) is the round trip
// minus the peer's processing time, and the true offset lies within
// offset ± delay/2.
type offsetSample struct {
	offset, delay int64
}

func sampleOf(t0, t1, t2, t3 int64) offsetSample {
	return offsetSample{offset: ((t1 - t0) + (t2 - t3)) / 2, delay: (t3 - t0) - (t2 - t1)}
}

// filterWindow is how many recent samples the clock filter keeps; like NTP
// it reports the one with the smallest delay, whose error bound is tightest.
const filterWindow = 8

// peerState is what this node knows about one peer from probing it.
type peerState struct {
	samples  [filterWindow]offsetSample
	nsamples int
	next     int

	applied, lastSeq uint64
	lastSeen         time.Time
	lastErr          string
	refused          string // non-empty: the peer's clock is beyond the maximum offset
}

func (p *peerState) best() (offsetSample, bool) {
	if p.nsamples == 0 {
		return offsetSample{}, false
	}
	b := p.samples[0]
	for _, s := range p.samples[1:p.nsamples] {
		if s.delay < b.delay {
			b = s
		}
	}
	return b, true
}

// peerTable holds the probe results of every peer. Safe for concurrent use.
type peerTable struct {
	mu    sync.Mutex
	peers map[string]*peerState
}

func newPeerTable() *peerTable { return &peerTable{peers: make(map[string]*peerState)} }

func (t *peerTable) getLocked(id string) *peerState {
	p := t.peers[id]
	if p == nil {
		p = &peerState{}
		t.peers[id] = p
	}
	return p
}

// refused returns why the peer is refused, or "".
func (t *peerTable) refused(id string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.peers[id]; p != nil {
		return p.refused
	}
	return ""
}

func (t *peerTable) snapshot(id string) (peerState, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.peers[id]
	if p == nil {
		return peerState{}, false
	}
	return *p, true
}

// record adds a probe result and re-evaluates the refusal: a peer is
// refused when even the most favourable reading of the best sample,
// |offset| - delay/2, exceeds maxOffset.
func (t *peerTable) record(id string, s offsetSample, applied, lastSeq uint64, maxOffset time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.getLocked(id)
	p.samples[p.next] = s
	p.next = (p.next + 1) % filterWindow
	p.nsamples = min(p.nsamples+1, filterWindow)
	p.applied, p.lastSeq, p.lastSeen, p.lastErr = applied, lastSeq, time.Now(), ""
	b, _ := p.best()
	if off := absDur(b.offset) - time.Duration(b.delay/2); off > maxOffset {
		p.refused = fmt.Sprintf("%v: peer %s is off by %v ± %v (max %v)", ErrClockOffset, id,
			time.Duration(b.offset), time.Duration(b.delay/2), maxOffset)
	} else {
		p.refused = ""
	}
}

// fail records a failed probe. A probe refused for its clock (either side
// found the other's HLC beyond the maximum offset) refuses the peer until a
// probe succeeds again.
func (t *peerTable) fail(id string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.getLocked(id)
	p.lastErr = err.Error()
	if errors.Is(err, ErrClockOffset) {
		p.refused = err.Error()
	}
}

func (t *peerTable) forget(keep map[string]bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id := range t.peers {
		if !keep[id] {
			delete(t.peers, id)
		}
	}
}

func absDur(ns int64) time.Duration {
	if ns < 0 {
		ns = -ns
	}
	return time.Duration(ns)
}

type pingRequest struct {
	From string `json:"from"`
}

type pingResponse struct {
	ID      string `json:"id"`
	T1      int64  `json:"t1"`
	T2      int64  `json:"t2"`
	Applied uint64 `json:"applied"`
	LastSeq uint64 `json:"last_seq"`
}

// ping probes one peer: one four-timestamp exchange. t0 and t3 are taken
// as close to the wire as the HTTP client allows: t0 just before sending,
// t3 as soon as the reply's headers arrived (its body is decoded after).
func (n *Node) ping(ctx context.Context, raftAddr string) (offsetSample, pingResponse, error) {
	body, _ := json.Marshal(pingRequest{From: n.cfg.ID})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, peerURL(raftAddr)+"/v1/cluster/ping", bytes.NewReader(body))
	if err != nil {
		return offsetSample{}, pingResponse{}, err
	}
	t0 := n.cfg.Now()
	resp, err := n.send(req)
	t3 := n.cfg.Now()
	if err != nil {
		return offsetSample{}, pingResponse{}, err
	}
	defer resp.Body.Close()
	var pr pingResponse
	if err := json.NewDecoder(resp.Body).Decode(&pr); err != nil {
		return offsetSample{}, pingResponse{}, err
	}
	return sampleOf(t0, pr.T1, pr.T2, t3), pr, nil
}

// pingBurst is how many probes a peer gets per round: the clock filter keeps
// the fastest, so a burst tightens the error bound on a busy machine.
const pingBurst = 3

// pingLoop probes every other member each PingInterval: clock offset, RTT,
// applied index. It also advances the HLC from every reply (see do).
func (n *Node) pingLoop(ctx context.Context) {
	t := time.NewTicker(n.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		members := n.fsm.membersList()
		keep := make(map[string]bool, len(members))
		var wg sync.WaitGroup
		for _, m := range members {
			keep[m.ID] = true
			if m.ID == n.cfg.ID || m.RaftAddr == "" {
				continue
			}
			wg.Go(func() {
				pctx, cancel := context.WithTimeout(ctx, n.cfg.PingInterval)
				defer cancel()
				for range pingBurst {
					s, pr, err := n.ping(pctx, m.RaftAddr)
					if err != nil {
						n.peers.fail(m.ID, err)
						return
					}
					n.peers.record(m.ID, s, pr.Applied, pr.LastSeq, n.cfg.MaxOffset)
				}
			})
		}
		wg.Wait()
		n.peers.forget(keep)
	}
}

// checkClock measures a would-be member's clock with a few probes to its
// Raft port and returns an error wrapping ErrClockOffset if it is beyond
// the maximum. With Credentials the probes also prove that whoever listens
// at raftAddr holds a member certificate.
func (n *Node) checkClock(ctx context.Context, id, raftAddr string) error {
	var best offsetSample
	ok := false
	var lastErr error
	for range 4 {
		s, _, err := n.ping(ctx, raftAddr)
		if err != nil {
			lastErr = err
			continue
		}
		if !ok || s.delay < best.delay {
			best, ok = s, true
		}
	}
	if !ok {
		return fmt.Errorf("cluster: probe %s at %s: %w", id, raftAddr, lastErr)
	}
	if off := absDur(best.offset) - time.Duration(best.delay/2); off > n.cfg.MaxOffset {
		return fmt.Errorf("%w: node %s is off by %v ± %v (max %v)", ErrClockOffset, id,
			time.Duration(best.offset), time.Duration(best.delay/2), n.cfg.MaxOffset)
	}
	return nil
}
