package cluster

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
)

// Errors returned by the cluster.
var (
	// ErrNoQuorum: the node cannot reach a leader backed by a quorum, so a
	// write cannot be committed. The HTTP API maps it to 503.
	ErrNoQuorum = fmt.Errorf("cluster: no quorum (%w)", propagate.ErrUnavailable)
	// ErrClockOffset: a peer's clock is further off than the maximum offset;
	// the peer is refused.
	ErrClockOffset = fmt.Errorf("cluster: peer clock offset exceeds the maximum (%w)", propagate.ErrUnavailable)
	// ErrClosed: the node was closed.
	ErrClosed = errors.New("cluster: closed")
	// ErrBadEntry: a log entry or forwarded batch could not be decoded.
	ErrBadEntry = errors.New("cluster: malformed entry")
	// ErrNotLeader: a leader-only operation reached a follower.
	ErrNotLeader = errors.New("cluster: not the leader")
	// ErrExistingState: Bootstrap or Join with a journal that already holds
	// records but no Raft state.
	ErrExistingState = errors.New("cluster: journal has records but no raft state")
)

// Config configures a Node. Zero durations and sizes mean their defaults.
type Config struct {
	ID       string // unique, stable node ID (required)
	RaftAddr string // HOST:PORT the Raft transport listens on and advertises (required)
	APIURL   string // this node's HTTP API base URL, e.g. http://127.0.0.1:7878 (required)
	Dir      string // Raft state: wal/ and snapshots/ (required)

	Journal *journal.Journal // the node's journal (required)
	Clock   *event.Clock     // HLC shared with the propagation manager; nil = a new one over Now
	// Now is the physical clock (Unix ns) used for clock-offset estimates and
	// by the default Clock; nil = time.Now. Tests skew it.
	Now       func() int64
	MaxOffset time.Duration // refuse peers further off; default event.DefaultMaxOffset (500ms)

	Bootstrap bool   // start a new single-node cluster (ignored if Raft state exists)
	Join      string // API URL of any member to join through (ignored if Raft state exists)

	MaxBatch int // events per log entry (N); default 4096
	// MaxDelay is how long a batch may wait for more events (T). Zero means
	// no waiting: an entry takes whatever queued while the previous one was
	// being appended (natural batching; raft groups in-flight entries into
	// one fsync anyway), which measured best on loopback.
	MaxDelay time.Duration

	HeartbeatTimeout   time.Duration // default 1s
	ElectionTimeout    time.Duration // default 1s
	LeaderLeaseTimeout time.Duration // default 500ms
	CommitTimeout      time.Duration // default 5ms
	SnapshotInterval   time.Duration // default 2m
	SnapshotThreshold  uint64        // default 8192 entries
	TrailingLogs       uint64        // default 10240 entries
	PingInterval       time.Duration // clock/lag probes to every peer; default 1s
	ForwardTimeout     time.Duration // a forwarded write, end to end; default 10s
	WALSegmentSize     int           // raft-wal segment size; default 64 MiB. The log is truncated by whole segments
	LeaderWait         time.Duration // how long a write waits for a leader; default 2s

	// Token is sent as a bearer token on every request to a peer's API (the
	// cluster routes need an admin token when the API has tokens).
	Token string
	// TLSClient, if set, is used for HTTPS peer API URLs.
	TLSClient *tls.Config

	// Dial opens every outgoing connection (Raft and HTTP to peers); nil =
	// net.Dialer. Tests wrap it to cut links.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// DeliverWanted, if set, is asked before decoding committed events for
	// the delivery hook on a node that did not publish them; false skips the
	// decode (no live subscriber would see them). nil = always deliver.
	DeliverWanted func() bool

	Logger       *slog.Logger // nil = slog.Default()
	RaftLogLevel string       // hclog level of the raft library; default "warn"
}

func (c *Config) setDefaults() error {
	switch {
	case c.ID == "":
		return errors.New("cluster: Config.ID is required")
	case c.RaftAddr == "":
		return errors.New("cluster: Config.RaftAddr is required")
	case c.APIURL == "":
		return errors.New("cluster: Config.APIURL is required")
	case c.Dir == "":
		return errors.New("cluster: Config.Dir is required")
	case c.Journal == nil:
		return errors.New("cluster: Config.Journal is required")
	}
	c.APIURL = strings.TrimRight(c.APIURL, "/")
	if c.Now == nil {
		c.Now = func() int64 { return time.Now().UnixNano() }
	}
	if c.MaxOffset <= 0 {
		c.MaxOffset = event.DefaultMaxOffset
	}
	if c.Clock == nil {
		c.Clock = event.NewClockFunc(c.MaxOffset, c.Now)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.HeartbeatTimeout, time.Second)
	def(&c.ElectionTimeout, time.Second)
	def(&c.LeaderLeaseTimeout, 500*time.Millisecond)
	def(&c.CommitTimeout, 5*time.Millisecond)
	def(&c.SnapshotInterval, 2*time.Minute)
	def(&c.PingInterval, time.Second)
	def(&c.ForwardTimeout, 10*time.Second)
	def(&c.LeaderWait, 2*time.Second)
	if c.MaxBatch <= 0 {
		c.MaxBatch = 4096
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 8192
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = 10240
	}
	if c.Dial == nil {
		var d net.Dialer
		c.Dial = d.DialContext
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.RaftLogLevel == "" {
		c.RaftLogLevel = "warn"
	}
	return nil
}

// Node is one member of a semprop cluster: a Raft peer whose FSM appends
// committed batches to the local journal, and a propagate.Sequencer for the
// local propagation manager. All methods are safe for concurrent use.
type Node struct {
	cfg     Config
	log     *slog.Logger
	j       *journal.Journal
	clock   *event.Clock
	deliver propagate.Deliver

	r      *raft.Raft
	wal    *raftwal.WAL
	meta   *metadb.BoltMetaDB
	trans  *raft.NetworkTransport
	snaps  *raft.FileSnapshotStore
	fsm    *fsm
	client *http.Client
	b      *batcher
	peers  *peerTable

	// pendMu guards pending: events published on this node, by batch nonce,
	// so the FSM delivers the caller's own events instead of decoding copies.
	pendMu  sync.Mutex
	pending map[uint64][]*event.Event
	nonce   atomic.Uint64

	restores atomic.Uint64 // snapshots restored
	fetched  atomic.Uint64 // journal records fetched from peers

	ctx    context.Context // cancelled by Close; owned by the node's goroutines
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool
	once   sync.Once
}

var _ propagate.Sequencer = (*Node)(nil)

// Open starts a node: it opens the Raft log (raft-wal) and snapshot store in
// cfg.Dir, listens on cfg.RaftAddr, and bootstraps or joins if asked and the
// node has no Raft state yet. deliver is the propagation manager's delivery
// hook (nil delivers nothing); use Open from propagate.Options.NewSequencer.
// Joining happens in the background, retried until it succeeds or the node
// closes; the node answers writes with ErrNoQuorum until it has a leader.
func Open(cfg Config, deliver propagate.Deliver) (*Node, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg: cfg, log: cfg.Logger.With("node", cfg.ID), j: cfg.Journal, clock: cfg.Clock, deliver: deliver,
		pending: make(map[uint64][]*event.Event),
	}
	n.nonce.Store(uint64(cfg.Now()))
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.client = &http.Client{Transport: &http.Transport{
		DialContext: cfg.Dial, MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute, TLSClientConfig: cfg.TLSClient,
	}}
	n.peers = newPeerTable()
	n.fsm = newFSM(n, cfg.Journal)
	if err := n.openRaft(); err != nil {
		n.cancel()
		n.closeStores()
		return nil, err
	}
	n.b = newBatcher(n)
	n.wg.Go(func() { n.b.run(n.ctx) })
	n.wg.Go(func() { n.pingLoop(n.ctx) })
	n.wg.Go(func() { n.announceLoop(n.ctx) })
	return n, nil
}

func (n *Node) openRaft() error {
	cfg := &n.cfg
	walDir := filepath.Join(cfg.Dir, "wal")
	if err := os.MkdirAll(walDir, 0o755); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	hl := hclog.New(&hclog.LoggerOptions{
		Name: "raft", Level: hclog.LevelFromString(cfg.RaftLogLevel), Output: os.Stderr,
	}).With("node", cfg.ID)
	// raft-wal's Close leaves its meta database open (and flocked): own it.
	n.meta = &metadb.BoltMetaDB{}
	wal, err := raftwal.Open(walDir, raftwal.WithLogger(hl.Named("wal")), raftwal.WithMetaStore(n.meta),
		raftwal.WithSegmentSize(cmp.Or(cfg.WALSegmentSize, raftwal.DefaultSegmentSize)))
	if err != nil {
		return fmt.Errorf("cluster: open raft wal: %w", err)
	}
	n.wal = wal
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, hl.Named("snap"))
	if err != nil {
		return fmt.Errorf("cluster: snapshot store: %w", err)
	}
	n.snaps = snaps
	ln, err := net.Listen("tcp", cfg.RaftAddr)
	if err != nil {
		return fmt.Errorf("cluster: listen %s: %w", cfg.RaftAddr, err)
	}
	if strings.HasSuffix(cfg.RaftAddr, ":0") {
		cfg.RaftAddr = ln.Addr().String()
	}
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: &streamLayer{ln: ln, advertise: cfg.RaftAddr, dial: cfg.Dial, ctx: n.ctx}, MaxPool: 4,
		Timeout: 10 * time.Second, Logger: hl.Named("net"),
	})
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hl
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.TrailingLogs = cfg.TrailingLogs
	rc.MaxAppendEntries = 256
	// BatchApplyCh stays off: with a buffered apply channel a future still
	// in the buffer at shutdown is never answered. The batcher already puts
	// everything that queued during the previous append into one entry.

	existing, err := raft.HasExistingState(wal, wal, snaps)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if !existing && cfg.Journal.LastSeq() > 0 {
		return fmt.Errorf("%w: %d records; a new cluster member needs an empty journal", ErrExistingState, cfg.Journal.LastSeq())
	}
	if !existing && cfg.Bootstrap {
		conf := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: raft.ServerAddress(cfg.RaftAddr)}}}
		if err := raft.BootstrapCluster(rc, wal, wal, snaps, n.trans, conf); err != nil {
			return fmt.Errorf("cluster: bootstrap: %w", err)
		}
	}
	r, err := raft.NewRaft(rc, n.fsm, wal, wal, snaps, n.trans)
	if err != nil {
		return fmt.Errorf("cluster: start raft: %w", err)
	}
	n.r = r
	if !existing && !cfg.Bootstrap && cfg.Join != "" {
		n.wg.Go(func() { n.joinLoop(n.ctx, cfg.Join) })
	}
	return nil
}

func (n *Node) closeStores() {
	if n.trans != nil {
		_ = n.trans.Close()
	}
	if n.wal != nil {
		_ = n.wal.Close()
	}
	if n.meta != nil {
		_ = n.meta.Close()
	}
}

// ID returns the node's ID.
func (n *Node) ID() string { return n.cfg.ID }

// Clock returns the node's HLC clock (share it with the manager).
func (n *Node) Clock() *event.Clock { return n.clock }

// Raft returns the underlying Raft instance, for inspection and tests.
func (n *Node) Raft() *raft.Raft { return n.r }

// IsLeader reports whether this node is the Raft leader.
func (n *Node) IsLeader() bool { return n.r.State() == raft.Leader }

// Leader returns the leader's membership metadata, if a leader is known.
func (n *Node) Leader() (Member, bool) {
	addr, id := n.r.LeaderWithID()
	if id == "" {
		return Member{}, false
	}
	if m, ok := n.fsm.member(string(id)); ok {
		return m, true
	}
	return Member{ID: string(id), RaftAddr: string(addr)}, true
}

// Ready reports whether the node can commit writes now, and if not why:
// it needs a leader it has heard from recently, a working FSM and a leader
// clock within the maximum offset.
func (n *Node) Ready() (bool, string) {
	if n.closed.Load() {
		return false, "cluster: node closed"
	}
	if e := n.fsm.failed.Load(); e != nil {
		return false, (*e).Error()
	}
	switch st := n.r.State(); st {
	case raft.Leader:
		return true, ""
	case raft.Follower:
		ld, ok := n.Leader()
		if !ok {
			return false, "cluster: no quorum: no leader known"
		}
		if since := time.Since(n.r.LastContact()); since > 2*n.cfg.HeartbeatTimeout {
			return false, fmt.Sprintf("cluster: no quorum: no contact with leader %s for %v", ld.ID, since.Round(time.Millisecond))
		}
		if reason := n.peers.refused(ld.ID); reason != "" {
			return false, reason
		}
		return true, ""
	default:
		return false, "cluster: no quorum: " + strings.ToLower(st.String()) + ", no leader elected"
	}
}

// AppliedIndex returns the index of the last log entry this node's FSM
// applied.
func (n *Node) AppliedIndex() uint64 { return n.fsm.applied.Load() }

// WaitApplied returns once this node's FSM has applied entry index (and so
// its journal holds every event committed up to it), or ctx's error.
func (n *Node) WaitApplied(ctx context.Context, index uint64) error {
	for {
		ch := n.fsm.changed()
		if n.fsm.applied.Load() >= index {
			return nil
		}
		if e := n.fsm.failed.Load(); e != nil {
			return *e
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-n.ctx.Done():
			return ErrClosed
		}
	}
}

// ReadIndex returns an entry index that covers every write acknowledged
// before the call: the leader issues a Barrier (which also proves it still
// leads a quorum) and answers with its applied index; a follower asks the
// leader.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	if n.IsLeader() {
		if err := n.r.Barrier(n.cfg.ForwardTimeout).Error(); err != nil {
			return 0, fmt.Errorf("%w: barrier: %v", ErrNoQuorum, err)
		}
		return n.fsm.applied.Load(), nil
	}
	return n.remoteReadIndex(ctx)
}

// Sync waits until this node's journal durably holds every event
// acknowledged anywhere in the cluster before the call (a linearizable read
// point): ReadIndex, WaitApplied, then the journal's WaitDurable.
func (n *Node) Sync(ctx context.Context) error {
	idx, err := n.ReadIndex(ctx)
	if err != nil {
		return err
	}
	if err := n.WaitApplied(ctx, idx); err != nil {
		return err
	}
	return n.j.WaitDurable(ctx, n.j.LastSeq())
}

// Sequence implements propagate.Sequencer: the events are committed through
// Raft (forwarded to the leader from a follower), each gets its Seq, and
// Sequence returns once the batch is committed on a quorum and durable in
// this node's journal. Errors wrap ErrNoQuorum when no leader with a quorum
// could be reached (after a leadership loss the outcome is unknown: the
// events may still commit).
func (n *Node) Sequence(ctx context.Context, evs []*event.Event) error {
	if n.closed.Load() {
		return ErrClosed
	}
	if len(evs) == 0 {
		return nil
	}
	rq := &request{evs: evs, done: make(chan struct{})}
	if err := n.b.submit(ctx, rq); err != nil {
		return err
	}
	select {
	case <-rq.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if rq.err != nil {
		return rq.err
	}
	if err := n.WaitApplied(ctx, rq.index); err != nil {
		return err
	}
	for i, ev := range evs {
		ev.Seq = rq.first + uint64(i)
	}
	if err := n.j.WaitDurable(ctx, rq.first+uint64(len(evs))-1); err != nil {
		return fmt.Errorf("cluster: journal: %w", err)
	}
	return nil
}

func (n *Node) addPending(nonce uint64, evs []*event.Event) {
	n.pendMu.Lock()
	n.pending[nonce] = evs
	n.pendMu.Unlock()
}

func (n *Node) takePending(nonce uint64) []*event.Event {
	n.pendMu.Lock()
	evs := n.pending[nonce]
	if evs != nil {
		delete(n.pending, nonce)
	}
	n.pendMu.Unlock()
	return evs
}

// Close stops the node: pending writes fail, Raft shuts down (without
// leaving the cluster; see Leave), the transport and log store close. It
// does not close the journal.
func (n *Node) Close() error {
	var err error
	n.once.Do(func() {
		n.closed.Store(true)
		n.cancel()
		err = n.r.Shutdown().Error()
		n.wg.Wait()
		n.client.CloseIdleConnections()
		n.closeStores()
	})
	return err
}

// streamLayer is raft's TCP stream layer with a pluggable dialer. Dial
// keeps retrying (every 50ms, within raft's timeout) while the peer is
// unreachable: raft backs off exponentially between failed replication
// attempts (up to 10s), so without this a follower would wait seconds after
// a partition heals before the leader tried again; with it the first
// connection after the heal carries the catch-up.
type streamLayer struct {
	ln        net.Listener
	advertise string
	dial      func(ctx context.Context, network, addr string) (net.Conn, error)
	ctx       context.Context // the node's: Close stops pending dials

	// mu guards conns: every connection accepted or dialed, closed by Close
	// (raft's transport leaves pooled and accepted connections open).
	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

var _ raft.StreamLayer = (*streamLayer)(nil)

type trackedConn struct {
	net.Conn
	s    *streamLayer
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}

func (s *streamLayer) track(c net.Conn) (net.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	if s.conns == nil {
		s.conns = make(map[*trackedConn]struct{})
	}
	tc := &trackedConn{Conn: c, s: s}
	s.conns[tc] = struct{}{}
	return tc, nil
}

func (s *streamLayer) Accept() (net.Conn, error) {
	c, err := s.ln.Accept()
	if err != nil {
		return nil, err
	}
	return s.track(c)
}

func (s *streamLayer) Close() error {
	err := s.ln.Close()
	s.mu.Lock()
	s.closed = true
	conns := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	return err
}

func (s *streamLayer) Addr() net.Addr {
	if a, err := net.ResolveTCPAddr("tcp", s.advertise); err == nil && !a.IP.IsUnspecified() {
		return a
	}
	return s.ln.Addr()
}

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	for {
		c, err := s.dial(ctx, "tcp", string(addr))
		if err == nil {
			return s.track(c)
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return nil, err
		}
	}
}

var _ io.Closer = (*Node)(nil)
