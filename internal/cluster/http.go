package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
)

// Headers every cluster message carries: the sender's HLC (the receiver
// updates its clock from it, refusing one beyond the maximum offset) and
// the sender's node ID.
const (
	hdrHLC  = "Semprop-Hlc"
	hdrNode = "Semprop-Node"
)

// Error codes in JSON error bodies, mapped back to sentinels by clients.
const (
	codeNoQuorum  = "no_quorum"
	codeClock     = "clock_offset"
	codeNotLeader = "not_leader"
	codeNoID      = "no_id"
	codeUnknown   = "unknown_member"
	codeLastVoter = "last_voter"
)

type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"`
}

// Handler returns the cluster's routes on the HTTP API, to mount at
// /v1/cluster and /v1/cluster/ (the API's authentication applies: admin
// tokens when it has tokens):
//
//	GET  /v1/cluster            status (Status as JSON)
//	POST /v1/cluster/join       {"id","raft_addr","api_url"}: add a voter (any member; forwarded to the leader)
//	POST /v1/cluster/leave      {"id"}: remove a member (the id is required; a leader hands over first)
//
// The internal routes members use among themselves (forward, ping,
// readindex, journal) are not on the API: they are served on the Raft port
// only, to peers that hold a member certificate (see Config.Credentials),
// and the API answers them 404.
func (n *Node) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/cluster", n.handleStatus)
	mux.HandleFunc("POST /v1/cluster/join", n.handleJoin)
	mux.HandleFunc("POST /v1/cluster/leave", n.handleLeave)
	mux.HandleFunc("/v1/cluster/", func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, http.StatusNotFound, "", errors.New("cluster: no such route on the API (members talk to each other on the raft port)"))
	})
	return n.withHLC(mux)
}

// CodeNotInCluster is the error code of the answer NotInCluster gives.
const CodeNotInCluster = "not_in_cluster"

// NotInCluster returns the handler a daemon that is not a cluster member
// mounts at /v1/cluster and /v1/cluster/: every request is answered 404
// with {"error":"this daemon is not in a cluster ...","code":"not_in_cluster"},
// so that `semprop cluster status` says so instead of "no route". It is
// safe for concurrent use.
func NotInCluster() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, http.StatusNotFound, CodeNotInCluster,
			errors.New("this daemon is not in a cluster (it runs alone: start it with a cluster configuration to form or join one)"))
	})
}

// internalHandler serves the requests members send each other on the Raft
// port (the stream layer authenticated the connection):
//
//	POST /v1/cluster/forward    a follower's batch for the leader
//	POST /v1/cluster/ping       clock-offset and lag probe
//	POST /v1/cluster/readindex  the leader's read index
//	GET  /v1/cluster/journal    journal records ?from=&to= for a lagging node
//	POST /v1/cluster/join       a join or announcement forwarded to the leader
//	POST /v1/cluster/leave      a leave forwarded to the leader
func (n *Node) internalHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/cluster/join", n.handleJoin)
	mux.HandleFunc("POST /v1/cluster/leave", n.handleLeave)
	mux.HandleFunc("POST /v1/cluster/forward", n.handleForward)
	mux.HandleFunc("POST /v1/cluster/ping", n.handlePing)
	mux.HandleFunc("POST /v1/cluster/readindex", n.handleReadIndex)
	mux.HandleFunc("GET /v1/cluster/journal", n.handleJournal)
	return n.withHLC(mux)
}

// withHLC merges the sender's HLC (refusing one beyond the maximum offset),
// refuses forwarded writes from a peer refused for its clock, and stamps
// the reply with this node's HLC and ID.
func (n *Node) withHLC(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v := r.Header.Get(hdrHLC); v != "" {
			if ts, err := event.ParseHLC(v); err == nil {
				if _, err := n.clock.Update(ts); err != nil {
					writeErr(w, http.StatusConflict, codeClock, fmt.Errorf("%w: from %s: %v", ErrClockOffset, r.Header.Get(hdrNode), err))
					return
				}
			}
		}
		if from := r.Header.Get(hdrNode); from != "" && r.URL.Path == "/v1/cluster/forward" {
			if reason := n.peers.refused(from); reason != "" {
				writeErr(w, http.StatusConflict, codeClock, errors.New(reason))
				return
			}
		}
		w.Header().Set(hdrHLC, n.clock.Now().String())
		w.Header().Set(hdrNode, n.cfg.ID)
		h.ServeHTTP(w, r)
	})
}

// peerURL is the base URL of a member's internal routes: its Raft port.
// The scheme is http because the stream layer's dialer does the TLS.
func peerURL(raftAddr string) string { return "http://" + raftAddr }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, code string, err error) {
	writeJSON(w, status, errorBody{Error: err.Error(), Code: code})
}

// writeAnyErr maps err to a status and code.
func writeAnyErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrClockOffset):
		writeErr(w, http.StatusConflict, codeClock, err)
	case errors.Is(err, ErrNotLeader):
		writeErr(w, http.StatusMisdirectedRequest, codeNotLeader, err)
	case errors.Is(err, ErrNoQuorum), errors.Is(err, ErrClosed), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, context.Canceled):
		writeErr(w, http.StatusServiceUnavailable, codeNoQuorum, err)
	case errors.Is(err, ErrNoID):
		writeErr(w, http.StatusBadRequest, codeNoID, err)
	case errors.Is(err, ErrBadEntry):
		writeErr(w, http.StatusBadRequest, "", err)
	case errors.Is(err, ErrUnknownMember):
		writeErr(w, http.StatusNotFound, codeUnknown, err)
	case errors.Is(err, ErrLastVoter):
		writeErr(w, http.StatusConflict, codeLastVoter, err)
	default:
		writeErr(w, http.StatusInternalServerError, "", err)
	}
}

// send sends an internal request to a member's Raft port (see peerURL),
// carrying this node's HLC and ID, and merges the reply's HLC. A non-200
// reply comes back as an error wrapping the matching sentinel; on success
// the caller closes the body.
func (n *Node) send(req *http.Request) (*http.Response, error) {
	return n.sendVia(n.peer, req)
}

// sendVia is send over client (n.api for the join request to a member's
// API, with the cluster token).
func (n *Node) sendVia(client *http.Client, req *http.Request) (*http.Response, error) {
	req.Header.Set(hdrHLC, n.clock.Now().String())
	req.Header.Set(hdrNode, n.cfg.ID)
	if client == n.api && n.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+n.cfg.Token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if h := resp.Header.Get(hdrHLC); h != "" {
		if ts, err := event.ParseHLC(h); err == nil {
			if _, err := n.clock.Update(ts); err != nil {
				resp.Body.Close()
				return nil, fmt.Errorf("%w: reply from %s: %v", ErrClockOffset, resp.Header.Get(hdrNode), err)
			}
		}
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	var eb errorBody
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(body, &eb) != nil || eb.Error == "" {
		eb.Error = fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(body))
	}
	for _, c := range []struct {
		code string
		err  error
	}{{codeNoQuorum, ErrNoQuorum}, {codeClock, ErrClockOffset}, {codeNotLeader, ErrNotLeader}} {
		if eb.Code == c.code {
			return nil, fmt.Errorf("%w: %s", c.err, strings.TrimPrefix(eb.Error, c.err.Error()+": "))
		}
	}
	return nil, fmt.Errorf("cluster: %s %s: %s", req.Method, req.URL.Path, eb.Error)
}

// do is sendVia with the JSON reply decoded into out (if non-nil).
func (n *Node) do(client *http.Client, req *http.Request, out any) error {
	resp, err := n.sendVia(client, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// post sends an internal request to the member whose Raft port is at
// raftAddr.
func (n *Node) post(ctx context.Context, raftAddr, path string, in, out any) error {
	return n.postVia(ctx, n.peer, peerURL(raftAddr), path, in, out)
}

// postVia posts in (bytes, or a value sent as JSON) to url+path over
// client.
func (n *Node) postVia(ctx context.Context, client *http.Client, url, path string, in, out any) error {
	var body []byte
	switch v := in.(type) {
	case []byte:
		body = v
	default:
		body, _ = json.Marshal(v)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	return n.do(client, req, out)
}

// leaderPeer waits up to LeaderWait for a known leader with a Raft
// address (this node included: callers check IsLeader first).
func (n *Node) leaderPeer(ctx context.Context) (Member, error) {
	deadline := time.Now().Add(n.cfg.LeaderWait)
	for {
		if m, ok := n.Leader(); ok && m.RaftAddr != "" {
			return m, nil
		}
		if time.Now().After(deadline) {
			return Member{}, fmt.Errorf("%w: no leader known (state %s)", ErrNoQuorum, n.r.State())
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return Member{}, ctx.Err()
		}
	}
}

type forwardResult struct {
	First uint64   `json:"first"`
	Seqs  []uint64 `json:"seqs,omitempty"` // each event's seq, when the leader found copies
	Index uint64   `json:"index"`
}

// forwardBatch sends a follower's batch to the leader and answers the
// requests. A refusal that proves nothing was applied (not the leader any
// more, no leader yet) is retried a few times; anything else is not, since
// a retry could commit the events twice.
func (n *Node) forwardBatch(ctx context.Context, reqs []*request) {
	var evs []*event.Event
	for _, rq := range reqs {
		evs = append(evs, rq.evs...)
	}
	body, err := appendBatch(nil, 0, event.HLC{}, evs)
	if err != nil {
		failAll(reqs, fmt.Errorf("cluster: encode batch: %w", err))
		return
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ForwardTimeout)
	defer cancel()
	var res forwardResult
	retryUntil := time.Now().Add(n.cfg.LeaderWait)
	for {
		if n.IsLeader() {
			// Became the leader meanwhile: commit here.
			res.First, res.Seqs, res.Index, err = n.commit(ctx, evs)
			break
		}
		var ld Member
		ld, err = n.leaderPeer(ctx)
		if err != nil {
			break
		}
		err = n.post(ctx, ld.RaftAddr, "/v1/cluster/forward", body, &res)
		if err == nil {
			break
		}
		if (errors.Is(err, ErrNotLeader) || notSent(err)) && time.Now().Before(retryUntil) && ctx.Err() == nil {
			// Nothing was applied: safe to try again, e.g. on the next leader.
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if !errors.Is(err, ErrNoQuorum) && !errors.Is(err, ErrClockOffset) && ctx.Err() == nil {
			err = fmt.Errorf("%w: forward to leader %s: %v", ErrNoQuorum, ld.ID, err)
		}
		break
	}
	if err != nil {
		failAll(reqs, err)
		return
	}
	if res.Seqs != nil && len(res.Seqs) != len(evs) {
		failAll(reqs, fmt.Errorf("cluster: forward: the leader answered %d seqs for %d events", len(res.Seqs), len(evs)))
		return
	}
	answer(reqs, res.First, res.Seqs, res.Index)
}

// notSent reports whether err proves a request never reached its server
// (the connection could not be made).
func notSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// commit runs evs through the batcher and waits for the commit (not for
// this node's journal). seqs is nil, or each event's seq when some were
// copies.
func (n *Node) commit(ctx context.Context, evs []*event.Event) (first uint64, seqs []uint64, index uint64, err error) {
	rq := &request{evs: evs, done: make(chan struct{})}
	if err := n.b.submit(ctx, rq); err != nil {
		return 0, nil, 0, err
	}
	select {
	case <-rq.done:
		return rq.first, rq.seqs, rq.index, rq.err
	case <-ctx.Done():
		return 0, nil, 0, ctx.Err()
	}
}

func (n *Node) handleForward(w http.ResponseWriter, r *http.Request) {
	if !n.IsLeader() {
		writeAnyErr(w, fmt.Errorf("%w: %s", ErrNotLeader, n.cfg.ID))
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 256<<20))
	if err != nil {
		writeErr(w, http.StatusBadRequest, "", err)
		return
	}
	var b batch
	if err := decodeBatch(data, &b); err != nil {
		writeAnyErr(w, err)
		return
	}
	evs := make([]*event.Event, len(b.raw))
	store := make([]event.Event, len(b.raw))
	for i, raw := range b.raw {
		if err := store[i].UnmarshalBinary(raw); err != nil {
			writeAnyErr(w, fmt.Errorf("%w: event %d: %v", ErrBadEntry, i, err))
			return
		}
		evs[i] = &store[i]
	}
	first, seqs, index, err := n.commit(r.Context(), evs)
	if err != nil {
		writeAnyErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, forwardResult{First: first, Seqs: seqs, Index: index})
}

func (n *Node) handlePing(w http.ResponseWriter, r *http.Request) {
	t1 := n.cfg.Now()
	var pr pingRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&pr); err != nil {
		writeErr(w, http.StatusBadRequest, "", err)
		return
	}
	resp := pingResponse{ID: n.cfg.ID, T1: t1, Applied: n.AppliedIndex(), LastSeq: n.j.LastSeq()}
	w.Header().Set("Content-Type", "application/json")
	resp.T2 = n.cfg.Now()
	b, _ := json.Marshal(resp)
	w.Write(b)
}

func (n *Node) handleReadIndex(w http.ResponseWriter, r *http.Request) {
	if !n.IsLeader() {
		writeAnyErr(w, fmt.Errorf("%w: %s", ErrNotLeader, n.cfg.ID))
		return
	}
	idx, err := n.ReadIndex(r.Context())
	if err != nil {
		writeAnyErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]uint64{"index": idx})
}

func (n *Node) remoteReadIndex(ctx context.Context) (uint64, error) {
	for attempt := 0; ; attempt++ {
		ld, err := n.leaderPeer(ctx)
		if err != nil {
			return 0, err
		}
		var out struct {
			Index uint64 `json:"index"`
		}
		err = n.post(ctx, ld.RaftAddr, "/v1/cluster/readindex", []byte("{}"), &out)
		if err == nil {
			return out.Index, nil
		}
		if !errors.Is(err, ErrNotLeader) || attempt >= 3 {
			if !errors.Is(err, ErrNoQuorum) && ctx.Err() == nil {
				err = fmt.Errorf("%w: read index from %s: %v", ErrNoQuorum, ld.ID, err)
			}
			return 0, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// handleJournal streams journal records [from, to] as
// [u64 seq][u32 len][payload] frames, waiting up to 10s for them to become
// durable. 410 Gone if retention already dropped from.
func (n *Node) handleJournal(w http.ResponseWriter, r *http.Request) {
	from, err1 := strconv.ParseUint(r.URL.Query().Get("from"), 10, 64)
	to, err2 := strconv.ParseUint(r.URL.Query().Get("to"), 10, 64)
	if err1 != nil || err2 != nil || from == 0 || to < from {
		writeErr(w, http.StatusBadRequest, "", errors.New("want from and to, 1 <= from <= to"))
		return
	}
	if n.j.LastSeq() < to {
		writeErr(w, http.StatusNotFound, "", fmt.Errorf("journal ends at %d", n.j.LastSeq()))
		return
	}
	rd, err := n.j.Reader(from)
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, journal.ErrTruncated) {
			status = http.StatusGone
		}
		writeErr(w, status, "", err)
		return
	}
	defer rd.Close()
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "application/octet-stream")
	var hdr [12]byte
	for {
		seq, payload, err := rd.Next(ctx)
		if err != nil {
			return // the client sees a short stream
		}
		binary.LittleEndian.PutUint64(hdr[:], seq)
		binary.LittleEndian.PutUint32(hdr[8:], uint32(len(payload)))
		if _, err := w.Write(hdr[:]); err != nil {
			return
		}
		if _, err := w.Write(payload); err != nil {
			return
		}
		if seq >= to {
			return
		}
	}
}

// fillJournal makes the local journal reach upTo by fetching the records it
// lacks from a peer (the leader first), writing them, delivering them and
// waiting until they are durable. It retries for up to 30s.
func (n *Node) fillJournal(upTo uint64, members []Member) error {
	ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
	defer cancel()
	var lastErr error = errNoPeer
	for ctx.Err() == nil {
		if n.j.LastSeq() >= upTo {
			return n.j.WaitDurable(ctx, upTo)
		}
		var ld Member
		if n.r != nil { // nil while NewRaft restores the local snapshot at startup
			ld, _ = n.Leader()
		}
		cands := make([]Member, 0, len(members))
		for _, m := range members {
			if m.ID != n.cfg.ID && m.RaftAddr != "" {
				if m.ID == ld.ID {
					cands = append([]Member{m}, cands...)
				} else {
					cands = append(cands, m)
				}
			}
		}
		for _, m := range cands {
			if err := n.fetchFrom(ctx, m, upTo); err != nil {
				lastErr = fmt.Errorf("from %s: %w", m.ID, err)
				n.log.Warn("cluster: fetch journal records", "peer", m.ID, "err", err)
				continue
			}
			if n.j.LastSeq() >= upTo {
				break
			}
		}
		if n.j.LastSeq() < upTo {
			select {
			case <-time.After(200 * time.Millisecond):
			case <-ctx.Done():
			}
		}
	}
	return fmt.Errorf("cluster: journal needs records %d..%d: %w", n.j.LastSeq()+1, upTo, lastErr)
}

func (n *Node) fetchFrom(ctx context.Context, m Member, upTo uint64) error {
	from := n.j.LastSeq() + 1
	url := fmt.Sprintf("%s/v1/cluster/journal?from=%d&to=%d", peerURL(m.RaftAddr), from, upTo)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := n.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	pr := bufio.NewReaderSize(resp.Body, 256<<10)
	var hdr [12]byte
	var recs [][]byte
	flush := func() error {
		if len(recs) == 0 {
			return nil
		}
		first := n.j.LastSeq() + 1
		if _, err := n.j.Write(len(recs), func(i int, seq uint64, dst []byte) ([]byte, error) {
			if seq != first+uint64(i) {
				return nil, fmt.Errorf("journal assigned seq %d, want %d", seq, first+uint64(i))
			}
			return append(dst, recs[i]...), nil
		}); err != nil {
			return err
		}
		if n.deliver != nil {
			evs := make([]*event.Event, 0, len(recs))
			for _, rec := range recs {
				ev := new(event.Event)
				if ev.UnmarshalBinary(rec) == nil {
					evs = append(evs, ev)
				}
			}
			n.deliver(evs)
		}
		n.fetched.Add(uint64(len(recs)))
		recs = recs[:0]
		return nil
	}
	want := from
	for want <= upTo {
		if _, err := io.ReadFull(pr, hdr[:]); err != nil {
			if ferr := flush(); ferr != nil {
				return ferr
			}
			return fmt.Errorf("short stream at seq %d: %w", want, err)
		}
		seq := binary.LittleEndian.Uint64(hdr[:])
		l := binary.LittleEndian.Uint32(hdr[8:])
		if seq != want || l > journal.MaxRecordSize {
			return fmt.Errorf("bad record header: seq %d (want %d), %d bytes", seq, want, l)
		}
		rec := make([]byte, l)
		if _, err := io.ReadFull(pr, rec); err != nil {
			return fmt.Errorf("short record %d: %w", seq, err)
		}
		recs = append(recs, rec)
		want++
		if len(recs) >= 1024 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}
