package cluster

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// The Raft port carries two protocols, both started by the client: raft's
// own RPCs (whose first byte is an RPC type, 0 to 4) and the cluster's
// internal HTTP requests (forward, ping, read index, journal, join and
// leave between members), whose first byte is an upper-case method letter.
// With Credentials every connection is TLS 1.3 with a member certificate
// on both ends before either protocol sees a byte, so one handshake policy
// covers all member-to-member traffic.

// handshakeTimeout bounds the TLS handshake and the wait for the first
// byte of an accepted connection.
const handshakeTimeout = 10 * time.Second

// maxPending bounds the accepted connections still in their handshake: an
// outsider opening connections that never speak cannot hold more than this
// many goroutines and descriptors. A connection beyond the bound evicts
// the oldest one still in its handshake, so idle connections cannot lock
// members out: a member's handshake takes milliseconds, and is evicted
// only if maxPending newer connections arrive meanwhile.
const maxPending = 64

// streamLayer is raft's stream layer over TCP, with TLS when the node has
// Credentials, and the demultiplexer that hands HTTP connections to the
// node's internal server. Dial keeps retrying (every 50ms, within raft's
// timeout) while the peer is unreachable: raft backs off exponentially
// between failed replication attempts (up to 10s), so without this a
// follower would wait seconds after a partition heals before the leader
// tried again; with it the first connection after the heal carries the
// catch-up.
type streamLayer struct {
	ln        net.Listener
	advertise string
	dial      func(ctx context.Context, network, addr string) (net.Conn, error)
	server    *tls.Config // nil: plaintext (loopback only)
	client    *tls.Config
	ctx       context.Context // the node's: Close stops pending dials
	log       *slog.Logger

	raftc   chan net.Conn // accepted raft connections, for Accept
	httpLn  *connListener // accepted HTTP connections, for the internal server
	done    chan struct{} // closed by Close
	pending chan struct{} // semaphore of handshakes in progress
	wg      sync.WaitGroup

	refused    atomic.Uint64 // connections refused: failed handshakes, no member certificate
	lastLogged atomic.Int64  // unix ns of the last refusal logged

	// hsMu guards inHandshake: accepted connections not yet routed, with
	// the time they were accepted.
	hsMu        sync.Mutex
	inHandshake map[*trackedConn]time.Time

	// mu guards conns: every connection accepted or dialed, closed by Close
	// (raft's transport leaves pooled and accepted connections open).
	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

var _ raft.StreamLayer = (*streamLayer)(nil)

func newStreamLayer(ctx context.Context, ln net.Listener, advertise string, creds *Credentials,
	dial func(ctx context.Context, network, addr string) (net.Conn, error), log *slog.Logger) *streamLayer {
	s := &streamLayer{
		ln: ln, advertise: advertise, dial: dial, ctx: ctx, log: log,
		raftc: make(chan net.Conn), done: make(chan struct{}), pending: make(chan struct{}, maxPending),
		conns: make(map[*trackedConn]struct{}), inHandshake: make(map[*trackedConn]time.Time),
	}
	s.httpLn = newConnListener(s.done, ln.Addr())
	if creds != nil {
		s.server, s.client = creds.serverConfig(), creds.clientConfig()
	}
	s.wg.Go(s.acceptLoop)
	return s
}

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

func (s *streamLayer) track(c net.Conn) (*trackedConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	tc := &trackedConn{Conn: c, s: s}
	s.conns[tc] = struct{}{}
	return tc, nil
}

func (s *streamLayer) acceptLoop() {
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			// Out of descriptors and the like: back off, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(delay):
			case <-s.done:
				return
			}
			continue
		}
		delay = 0
		select {
		case s.pending <- struct{}{}:
		default:
			s.evictOldest()
			select {
			case s.pending <- struct{}{}:
			case <-s.done:
				c.Close()
				return
			}
		}
		tc, err := s.track(c)
		if err != nil {
			<-s.pending
			return
		}
		s.hsMu.Lock()
		s.inHandshake[tc] = time.Now()
		s.hsMu.Unlock()
		s.wg.Go(func() {
			defer func() { <-s.pending }()
			s.route(tc)
		})
	}
}

// evictOldest closes the connection that has been in its handshake the
// longest (its route then returns and frees its slot).
func (s *streamLayer) evictOldest() {
	s.hsMu.Lock()
	var oldest *trackedConn
	var at time.Time
	for c, t := range s.inHandshake {
		if oldest == nil || t.Before(at) {
			oldest, at = c, t
		}
	}
	delete(s.inHandshake, oldest)
	s.hsMu.Unlock()
	if oldest != nil {
		s.refuse(oldest.RemoteAddr(), fmt.Errorf("evicted: more than %d connections in their handshake", maxPending))
		oldest.Close()
	}
}

// route authenticates an accepted connection and hands it to raft or to
// the internal HTTP server by its first byte.
func (s *streamLayer) route(tc *trackedConn) {
	// done reports whether tc was still in its handshake (not evicted) and
	// ends that phase.
	done := func() bool {
		s.hsMu.Lock()
		defer s.hsMu.Unlock()
		_, ok := s.inHandshake[tc]
		delete(s.inHandshake, tc)
		return ok
	}
	var c net.Conn = tc
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	if s.server != nil {
		tlc := tls.Server(tc, s.server)
		if err := tlc.HandshakeContext(s.ctx); err != nil {
			if done() {
				s.refuse(tc.RemoteAddr(), err)
			}
			tc.Close()
			return
		}
		c = tlc
	}
	br := bufio.NewReaderSize(c, 16)
	first, err := br.Peek(1)
	if !done() || err != nil {
		tc.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	pc := &peekedConn{Conn: c, r: br}
	dst := s.raftc
	if first[0] >= 'A' && first[0] <= 'Z' {
		dst = s.httpLn.c
	}
	select {
	case dst <- pc:
	case <-s.done:
		tc.Close()
	case <-s.httpLn.closed: // only the internal server stopped: raft may still take its connections
		if dst == s.raftc {
			select {
			case dst <- pc:
			case <-s.done:
				tc.Close()
			}
		} else {
			tc.Close()
		}
	}
}

// refuse counts a refused connection and logs it, at most once a second
// (an outsider hammering the port must not flood the log).
func (s *streamLayer) refuse(addr net.Addr, err error) {
	n := s.refused.Add(1)
	now := time.Now().UnixNano()
	last := s.lastLogged.Load()
	if now-last < int64(time.Second) || !s.lastLogged.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn("cluster: refused a connection to the raft port", "remote", addr.String(), "err", err, "refused_total", n)
}

// Accept implements raft.StreamLayer: the next authenticated raft
// connection.
func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.raftc:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting and closes every connection accepted or dialed.
func (s *streamLayer) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	conns := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	err := s.ln.Close()
	for _, c := range conns {
		c.Close()
	}
	s.wg.Wait()
	return err
}

// Addr implements raft.StreamLayer: the advertised address.
func (s *streamLayer) Addr() net.Addr {
	if a, err := net.ResolveTCPAddr("tcp", s.advertise); err == nil && !a.IP.IsUnspecified() {
		return a
	}
	return s.ln.Addr()
}

// Dial implements raft.StreamLayer.
func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	for {
		c, err := s.dialOnce(ctx, string(addr))
		if err == nil || !isDialErr(err) {
			return c, err
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return nil, err
		}
	}
}

// dialErr marks a failure to open the TCP connection (as opposed to a
// refused handshake, which a retry does not fix).
type dialErr struct{ err error }

func (e *dialErr) Error() string { return e.err.Error() }
func (e *dialErr) Unwrap() error { return e.err }

func isDialErr(err error) bool {
	_, ok := err.(*dialErr)
	return ok
}

// dialOnce opens one connection to a peer's Raft port, with the TLS
// handshake done when the node has Credentials.
func (s *streamLayer) dialOnce(ctx context.Context, addr string) (net.Conn, error) {
	raw, err := s.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, &dialErr{err}
	}
	tc, err := s.track(raw)
	if err != nil {
		return nil, err
	}
	if s.client == nil {
		return tc, nil
	}
	tlc := tls.Client(tc, s.client)
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	if err := tlc.HandshakeContext(hctx); err != nil {
		tc.Close()
		return nil, fmt.Errorf("cluster: tls handshake with %s: %w", addr, err)
	}
	return tlc, nil
}

// dialHTTP is the internal HTTP client's DialContext: a connection to a
// peer's Raft port, authenticated like raft's own.
func (s *streamLayer) dialHTTP(ctx context.Context, _, addr string) (net.Conn, error) {
	c, err := s.dialOnce(ctx, addr)
	if de, ok := err.(*dialErr); ok {
		return nil, de.err // keep *net.OpError visible (see notSent)
	}
	return c, err
}

// peekedConn is a connection whose first bytes were read into r.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// connListener is a net.Listener fed by the demultiplexer. Accept fails
// once the listener or the stream layer (done) is closed.
type connListener struct {
	c      chan net.Conn
	done   chan struct{}
	addr   net.Addr
	once   sync.Once
	closed chan struct{}
}

func newConnListener(done chan struct{}, addr net.Addr) *connListener {
	return &connListener{c: make(chan net.Conn), done: done, addr: addr, closed: make(chan struct{})}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.c:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }

// pipelineStall bounds how long one pipelined AppendEntries may wait for
// room among the requests in flight (a variable for tests).
var pipelineStall = 5 * time.Second

var errPipelineStalled = errors.New("cluster: raft pipeline stalled; falling back to standard replication")

// transport is raft's NetworkTransport with pipelines that cannot wedge
// raft (see boundedPipeline).
type transport struct{ *raft.NetworkTransport }

// AppendEntriesPipeline implements raft.Transport.
func (t transport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := t.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	return &boundedPipeline{AppendPipeline: p}, nil
}

// boundedPipeline closes its pipeline when a send waits longer than
// pipelineStall. hashicorp/raft's pipelined replication stops reading
// responses when one says the follower refused (a newer term, a log
// mismatch) and goes on sending until it notices; a send that finds the
// pipeline's queues full (256 requests, reached when the machine is slow
// to decode them) then waits for room that never comes, and raft's
// Shutdown waits for that send forever. Closing the pipeline fails the
// send, which returns raft to its standard replication.
type boundedPipeline struct{ raft.AppendPipeline }

// AppendEntries implements raft.AppendPipeline. A timer, not a goroutine,
// watches the send: the common send costs one timer start and stop.
func (p *boundedPipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	var stalled atomic.Bool
	t := time.AfterFunc(pipelineStall, func() {
		stalled.Store(true)
		_ = p.AppendPipeline.Close() // ends the wait
	})
	f, err := p.AppendPipeline.AppendEntries(args, resp)
	if !t.Stop() && stalled.Load() {
		return nil, errPipelineStalled
	}
	return f, err
}
