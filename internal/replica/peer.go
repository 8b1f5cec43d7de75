package replica

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// peer is what this instance knows of another: guarded by Replica.peersMu.
type peer struct {
	url     string
	name    string        // learned from its messages
	acked   VersionVector // the peer's summary as last heard: it has all of it
	static  bool          // configured, never forgotten
	fails   int           // consecutive failed rounds
	lastOK  time.Time
	lastErr string
	busy    bool // a round is running

	// sent is what this instance answered the peer's last ask with: the
	// peer probably has it, so rounds do not push it again. Only acked
	// (what the peer said it has) counts for collecting tombstones.
	sent VersionVector

	gossiped string // the peer list last sent to it, joined
	rounds   int    // rounds since it was sent
}

// gossipEvery is how many rounds pass at most between two trades of peer
// lists with a peer.
const gossipEvery = 30

// forgetAfter is how many consecutive failures make a gossiped peer
// forgotten.
const forgetAfter = 30

// transport builds the client transport for peers from tc.
func transport(tc TLSConfig) (http.RoundTripper, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if tc.CA == "" && tc.Cert == "" {
		return t, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if tc.CA != "" {
		pem, err := os.ReadFile(tc.CA)
		if err != nil {
			return nil, fmt.Errorf("%w: sync.tls.ca: %w", ErrConfig, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: sync.tls.ca: no certificate in %s", ErrConfig, tc.CA)
		}
		cfg.RootCAs = pool
	}
	if tc.Cert != "" {
		cert, err := tls.LoadX509KeyPair(tc.Cert, tc.Key)
		if err != nil {
			return nil, fmt.Errorf("%w: sync.tls: %w", ErrConfig, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	t.TLSClientConfig = cfg
	return t, nil
}

// peerURLs lists the peers' URLs, sorted.
func (r *Replica) peerURLs() []string {
	r.peersMu.Lock()
	defer r.peersMu.Unlock()
	out := make([]string, 0, len(r.peers))
	for u := range r.peers {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

// learn adds peer URLs heard from another peer that the gossip patterns
// accept.
func (r *Replica) learn(urls []string) {
	r.peersMu.Lock()
	defer r.peersMu.Unlock()
	for _, u := range urls {
		if _, ok := r.peers[u]; ok || u == r.cfg.Advertise || len(r.peers) >= maxPeers || !r.cfg.gossipOK(u) {
			continue
		}
		r.peers[u] = &peer{url: u}
		r.log.Info("sync: peer learned by gossip", "peer", u)
	}
}

// acks returns the acknowledged summaries of every known peer, or nil if
// some peer has never answered (its state is unknown).
func (r *Replica) acks() []VersionVector {
	r.peersMu.Lock()
	defer r.peersMu.Unlock()
	out := make([]VersionVector, 0, len(r.peers))
	for _, p := range r.peers {
		if p.acked == nil {
			return nil
		}
		out = append(out, p.acked.Clone()) // Merge raises p.acked in place
	}
	return out
}

// syncLoop runs a round with every peer each interval, and soon after a
// local change. Rounds run one peer after another, in a new random order
// each time: a round asks with the summary the previous rounds raised, so
// what one peer sent is not pulled again from the next. (Concurrent
// rounds pulled a lagging replica's whole state from every peer at once.)
func (r *Replica) syncLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		r.peersMu.Lock()
		ps := make([]*peer, 0, len(r.peers))
		for _, p := range r.peers {
			ps = append(ps, p)
		}
		r.peersMu.Unlock()
		rand.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
		for _, p := range ps {
			if ctx.Err() != nil {
				return
			}
			r.round(ctx, p)
		}
		r.collect()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.kick:
			// Let a burst of local changes gather.
			select {
			case <-ctx.Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// round runs one exchange with p and keeps its record.
func (r *Replica) round(ctx context.Context, p *peer) {
	r.peersMu.Lock()
	if _, known := r.peers[p.url]; !known {
		r.peersMu.Unlock()
		return
	}
	p.busy = true
	r.peersMu.Unlock()
	err := r.exchange(ctx, p)
	r.peersMu.Lock()
	defer r.peersMu.Unlock()
	p.busy = false
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		p.fails++
		p.lastErr = err.Error()
		if p.fails == 1 || p.fails%10 == 0 {
			r.log.Warn("sync: exchange with peer failed", "peer", p.url, "fails", p.fails, "err", err)
		}
		if !p.static && p.fails >= forgetAfter {
			delete(r.peers, p.url)
			r.log.Info("sync: gossiped peer forgotten", "peer", p.url)
		}
		return
	}
	p.fails, p.lastOK, p.lastErr = 0, time.Now(), ""
}

// collect removes the tombstones every peer has acknowledged.
func (r *Replica) collect() {
	r.mu.RLock()
	none := r.state.Tombstones() == 0
	r.mu.RUnlock()
	acks := r.acks()
	if acks == nil || none {
		return
	}
	r.mu.Lock()
	n := r.state.CollectTombstones(acks)
	if n > 0 {
		r.dirty = true
	}
	r.mu.Unlock()
	r.met.collected.Add(uint64(n))
}

// syncPath is the route of exchanges; pagesPath of full-transfer pages.
const (
	syncPath    = "/v1/sync/exchange"
	pagesPath   = "/v1/sync/pages"
	contentType = "application/vnd.semprop.sync+zstd"
)

// exchange runs one anti-entropy round with p. First it pulls: it sends
// its summary (and peer list) and merges what p answers it lacks, pulling
// p's pages when it lacks too much. Then it pushes what p's fresh summary
// shows p lacks, in chunks when that is too much. Asking before pushing
// keeps a change from being sent to a peer that already has it from
// another.
func (r *Replica) exchange(ctx context.Context, p *peer) error {
	start := time.Now()
	hello := message{From: r.cfg.Name, URL: r.cfg.Advertise, Summary: r.Summary(), Hello: true}
	// The peer lists are traded when this one changed, and now and then.
	peers := r.peerURLs()
	joined := strings.Join(peers, " ")
	r.peersMu.Lock()
	if p.gossiped != joined || p.rounds >= gossipEvery {
		hello.Peers, p.gossiped, p.rounds = peers, joined, 0
	}
	p.rounds++
	r.peersMu.Unlock()
	ans, err := r.post(ctx, p.url+syncPath, &hello)
	if err != nil {
		return err
	}
	pulled := len(ans.Changes)
	if ans.Chunked {
		if ans, err = r.pullPages(ctx, p.url, ans); err != nil {
			return err
		}
		pulled = len(ans.Changes)
	}
	r.merge(Delta{Changes: ans.Changes, Summary: ans.Summary}, ans.Since)
	r.learn(ans.Peers)
	r.peersMu.Lock()
	p.name = ans.From
	p.acked = p.acked.Merge(ans.Summary) // it has what it answered with (a hello adds nothing to it)
	since := p.acked.Clone().Merge(p.sent)
	r.peersMu.Unlock()

	r.mu.RLock()
	lacking := r.state.CountDelta(since)
	var push message
	if lacking > 0 && lacking <= r.cfg.FullAfter {
		d := r.state.Delta(since)
		push = message{Summary: d.Summary, Changes: d.Changes, Since: since}
	}
	r.mu.RUnlock()
	if lacking > 0 {
		push.From, push.URL = r.cfg.Name, r.cfg.Advertise
		if lacking > r.cfg.FullAfter {
			// The whole state in chunks; the last one carries the summary.
			if push, err = r.pushPages(ctx, p, push); err != nil {
				return err
			}
		}
		back, err := r.post(ctx, p.url+syncPath, &push)
		if err != nil {
			return err
		}
		if !back.Chunked {
			r.merge(Delta{Changes: back.Changes, Summary: back.Summary}, back.Since)
		}
		r.peersMu.Lock()
		p.acked = p.acked.Merge(back.Summary) // its summary after the push: it may have kept the push pending
		r.peersMu.Unlock()
	}
	r.log.Debug("sync: exchange", "peer", p.url, "pulled", pulled, "chunked", ans.Chunked, "pushed", lacking, "took", time.Since(start))
	return nil
}

// pushPages sends the whole state to p in pages (More set on all but the
// last, which it returns unsent to carry the round's request).
func (r *Replica) pushPages(ctx context.Context, p *peer, head message) (message, error) {
	r.mu.RLock()
	summary := r.state.Summary()
	r.mu.RUnlock()
	var after *Key
	for {
		r.mu.RLock()
		page, more := r.state.Range(after, r.cfg.ChunkSize)
		r.mu.RUnlock()
		m := head
		m.Summary, m.Changes, m.More, m.Chunked, m.First = summary, page, more, true, after == nil
		if !more {
			return m, nil
		}
		if _, err := r.post(ctx, p.url+syncPath, &m); err != nil {
			return message{}, err
		}
		r.met.chunksSent.Add(1)
		k := page[len(page)-1].Key
		after = &k
	}
}

// pullPages fetches the whole state of the peer at base in pages,
// staged where eventual reads see them, and returns them as one answer
// with the summary of the first page.
func (r *Replica) pullPages(ctx context.Context, base string, first *message) (*message, error) {
	all := &message{From: first.From, Peers: first.Peers}
	var after *Key
	for {
		q := url.Values{"limit": {strconv.Itoa(r.cfg.ChunkSize)}}
		if after != nil {
			q.Set("tree", after.Tree)
			q.Set("path", after.Path)
		}
		page, err := r.do(ctx, http.MethodGet, base+pagesPath+"?"+q.Encode(), nil)
		if err != nil {
			return nil, err
		}
		if all.Summary == nil {
			all.Summary = page.Summary
		}
		all.Changes = append(all.Changes, page.Changes...)
		r.stage("pull:"+first.From, all.Changes, all.Summary)
		r.met.chunksReceived.Add(1)
		if !page.More || len(page.Changes) == 0 {
			break
		}
		k := page.Changes[len(page.Changes)-1].Key
		after = &k
	}
	r.mu.Lock()
	delete(r.staged, "pull:"+first.From)
	r.mu.Unlock()
	return all, nil
}

// stage keeps the chunks of a transfer from a peer until its end: cs is
// every change received so far.
func (r *Replica) stage(from string, cs []Change, summary VersionVector) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.staged[from]
	if s == nil {
		s = &staging{}
		r.staged[from] = s
	}
	s.changes = cs // the caller's growing slice: readers see its prefix
	s.summary = summary
	s.touched = time.Now()
}

// merge joins a delta computed against since into the catalog when this
// replica's summary covers since: the delta is then complete relative to
// it and the summary may rise. Otherwise the delta waits among the pending
// ones (visible to eventual reads only) until the summary has caught up,
// so causal reads never see a change without its causal past. A nil since
// stands for a whole state.
func (r *Replica) merge(d Delta, since VersionVector) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.state.summary.Covers(since) {
		r.met.partial.Add(1)
		if len(r.pending) >= maxPending {
			r.pending = r.pending[1:] // the oldest: a later round sends it again
		}
		r.pending = append(r.pending, pendingDelta{d: d, since: since, at: time.Now()})
		return
	}
	r.mergeLocked(d)
	for progress := true; progress; {
		progress = false
		for i := 0; i < len(r.pending); i++ {
			if p := r.pending[i]; r.state.summary.Covers(p.since) {
				r.pending = append(r.pending[:i], r.pending[i+1:]...)
				r.mergeLocked(p.d)
				progress = true
				i--
			}
		}
	}
}

// maxPending bounds the deltas waiting for their base.
const maxPending = 16

// pendingDelta is a delta whose base this replica has not reached.
type pendingDelta struct {
	d     Delta
	since VersionVector
	at    time.Time
}

func (r *Replica) mergeLocked(d Delta) {
	before := r.state.Summary()
	n := r.state.Merge(d)
	if n > 0 || r.state.summary.Compare(before) != Equal {
		r.dirty = true
		r.notifyLocked()
	}
	r.met.remote.Add(uint64(n))
}

func (r *Replica) post(ctx context.Context, u string, m *message) (*message, error) {
	return r.do(ctx, http.MethodPost, u, m.seal())
}

func (r *Replica) do(ctx context.Context, method, u string, body []byte) (*message, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	// Timeout bounds each request, not a round: a full transfer of many
	// chunks may take longer than one, and must not start over each time.
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPeer, err)
	}
	// No Content-Type: the API admits state-changing requests of other
	// components with JSON or none (a browser cannot send none), and the
	// body is a sealed message whatever the header says.
	req.Header.Set("Accept", contentType)
	if r.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.cfg.Token)
	}
	req.Header.Set("Semprop-Sync-From", r.cfg.Name)
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPeer, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxDecoded))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrPeer, u, err)
	}
	if resp.StatusCode != http.StatusOK {
		if len(b) > 200 {
			b = b[:200]
		}
		return nil, fmt.Errorf("%w: %s: %s: %s", ErrPeer, u, resp.Status, bytes.TrimSpace(b))
	}
	r.met.bytesSent.Add(uint64(len(body)))
	r.met.bytesReceived.Add(uint64(len(b)))
	m, err := open(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrPeer, u, err)
	}
	return m, nil
}
