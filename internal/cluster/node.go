package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
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
	// ErrInsecure: a Raft address other hosts can reach, without
	// Credentials.
	ErrInsecure = errors.New("cluster: refusing a non-loopback raft address without cluster credentials (a cluster CA, certificate and key)")
	// ErrCredentials: the cluster credentials could not be loaded or do not
	// fit together.
	ErrCredentials = errors.New("cluster: bad cluster credentials")
	// ErrNotMember: a peer did not present a certificate issued by the
	// cluster CA.
	ErrNotMember = errors.New("cluster: peer is not a member")
	// ErrNoID: a leave request without the ID of the member to remove.
	ErrNoID = errors.New("cluster: leave needs the id of the member to remove")
	// ErrUnknownMember: a leave request for an ID that is not a member.
	ErrUnknownMember = errors.New("cluster: no such member")
	// ErrLastVoter: the leader cannot leave, since no other voter can take
	// over.
	ErrLastVoter = errors.New("cluster: the leader is the only voter and cannot leave")
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
	// MaxInflight is how many log entries the leader has on their way
	// (handed to raft, not yet committed and applied); a new batch waits
	// for one of them to complete and takes everything that queued
	// meanwhile. A lone publisher never waits; concurrent ones share
	// entries in proportion to the load. Default 4.
	MaxInflight int

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

	// Credentials authenticate members to each other on the Raft port:
	// mutual TLS 1.3 with certificates issued by the cluster CA, for raft's
	// RPCs and for every internal request between members (forwarded
	// writes, probes, read indexes, journal fetches, forwarded joins and
	// leaves). nil means plaintext, which Open allows only on a loopback
	// RaftAddr.
	Credentials *Credentials

	// Token is sent as a bearer token with the join request to the API at
	// Join (the API's cluster routes need an admin token when it has
	// tokens). Nothing else goes to a peer's API.
	Token string
	// TLSClient, if set, is used for an HTTPS Join URL.
	TLSClient *tls.Config

	// Dial opens every outgoing TCP connection (Raft port and Join); nil =
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
	if c.Credentials == nil && !loopbackAddr(c.RaftAddr) {
		return fmt.Errorf("%w: %s", ErrInsecure, c.RaftAddr)
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
	if c.MaxInflight <= 0 {
		c.MaxInflight = 4
	}
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
	wal    *asyncLog
	meta   *metadb.BoltMetaDB
	trans  *raft.NetworkTransport
	snaps  *raft.FileSnapshotStore
	fsm    *fsm
	stream *streamLayer
	peer   *http.Client // internal requests to members' Raft ports
	api    *http.Client // the join request to a member's API
	srv    *http.Server // internal requests from members, on the Raft port
	b      *batcher
	peers  *peerTable

	// pendMu guards pending: events published on this node, by batch nonce,
	// so the FSM delivers the caller's own events instead of decoding copies.
	pendMu  sync.Mutex
	pending map[uint64][]*event.Event
	nonce   atomic.Uint64

	// window is idempotent ingest's memory (UseWindow); nil: off.
	window atomic.Pointer[windowRef]

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
	// Batches are told apart by nonce in the FSM: a random start per node
	// keeps two nodes' nonces from meeting (a start at the clock did, for
	// nodes started close together, after as many batches as nanoseconds
	// between their starts).
	n.nonce.Store(rand.Uint64())
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.api = &http.Client{Transport: &http.Transport{
		DialContext: cfg.Dial, MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute, TLSClientConfig: cfg.TLSClient,
	}}
	// n.stream is set by openRaft, before raft can restore a snapshot
	// (which may fetch journal records from peers).
	n.peer = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return n.stream.dialHTTP(ctx, network, addr)
		},
		MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute,
	}}
	n.peers = newPeerTable()
	n.fsm = newFSM(n, cfg.Journal)
	if err := n.openRaft(); err != nil {
		n.cancel()
		n.closeStores()
		return nil, err
	}
	n.srv = &http.Server{Handler: n.internalHandler(), ReadHeaderTimeout: handshakeTimeout, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelDebug)}
	n.wg.Go(func() { _ = n.srv.Serve(n.stream.httpLn) })
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
	w, err := openWAL(walDir, hl.Named("wal"), n.meta, cfg.WALSegmentSize)
	if err != nil {
		return fmt.Errorf("cluster: open raft wal: %w", err)
	}
	wal := newAsyncLog(w)
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
	n.stream = newStreamLayer(n.ctx, ln, cfg.RaftAddr, cfg.Credentials, cfg.Dial, n.log)
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: n.stream, MaxPool: 4,
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
		if err := raft.BootstrapCluster(rc, wal, wal, snaps, transport{n.trans}, conf); err != nil {
			return fmt.Errorf("cluster: bootstrap: %w", err)
		}
	}
	r, err := raft.NewRaft(rc, n.fsm, wal, wal, snaps, transport{n.trans})
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
// Sequence returns once the batch is committed on a quorum (fsynced in the
// Raft log of a majority) and applied to this node's journal (written, its
// fsync in the background; readers see the events once it is done). Errors wrap ErrNoQuorum when no leader with a quorum
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
	rq.setSeqs()
	// No wait for the journal's fsync: the entry is in the Raft log of a
	// quorum, fsynced, and the log is compacted only behind a snapshot
	// whose journal position is durable (fsmSnapshot.Persist), so a
	// journal that loses unsynced records gets them back from the log on
	// restart (fsm.applyBatch completes a torn journal). A journal failure
	// fails the apply, and so this call.
	return nil
}

type windowRef struct{ w propagate.Window }

var _ propagate.WindowUser = (*Node)(nil)

// UseWindow implements propagate.WindowUser: while this node is the
// leader, it answers an event that repeats one the window remembers, or
// one on its way through the log, with the first one's seq instead of
// committing it again. The leader decides for every node, so copies
// published at once through two nodes are stored once.
func (n *Node) UseWindow(w propagate.Window) {
	if w != nil {
		n.window.Store(&windowRef{w})
	}
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
		_ = n.srv.Close() // in-flight internal requests see their contexts end
		err = n.r.Shutdown().Error()
		n.wg.Wait()
		n.peer.CloseIdleConnections()
		n.api.CloseIdleConnections()
		n.closeStores()
	})
	return err
}

var _ io.Closer = (*Node)(nil)
