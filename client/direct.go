package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// direct publishes over plain-HTTP keep-alive connections of its own: the
// goroutine that calls Publish writes the request (header and body in one
// system call) and reads the answer itself, where net/http's transport
// hands each request to a writer goroutine and each answer back from a
// reader goroutine. On a loopback or LAN round trip those two hand-offs,
// and the thread wake-ups they cost, are a good part of the latency.
//
// New uses it for http:// servers that no proxy stands before; https,
// proxies and clients of NewWithHTTPClient go through net/http. Streams,
// replays and the other calls always do.
type direct struct {
	addr string // host:port to dial
	host string // the Host header
	path string // the base URL's path, prefixed to request paths

	mu    sync.Mutex
	idle  []*directConn // most recently used last
	prune *time.Timer   // armed while idle connections are kept
}

// directIdleMax is how long an idle connection is kept: then it is
// closed, even if no publish comes to reuse (and check) it, before the
// server's idle timeout (120 s by default) leaves it half closed.
var directIdleMax atomic.Int64 // a time.Duration; a variable for tests

func init() { directIdleMax.Store(int64(90 * time.Second)) }

// directIdleCheck is how long a connection may sit idle before it is
// checked (one non-blocking peek) for having been closed by the server
// (idle timeout, restart) before it is used again.
const directIdleCheck = 5 * time.Millisecond

// directConns are the pools by server address, shared by every Client
// New makes, as New's transport is.
var directConns sync.Map // addr string -> *direct

// newDirect returns the direct pool for base, or nil when requests to it
// must go through net/http: not plain http, or a proxy applies.
func newDirect(base string) *direct {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil
	}
	req := &http.Request{URL: u, Header: http.Header{}}
	if p, err := http.ProxyFromEnvironment(req); err != nil || p != nil {
		return nil
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	d := &direct{addr: addr, host: u.Host, path: u.EscapedPath()}
	key := addr + "\x00" + u.Host + "\x00" + d.path
	v, _ := directConns.LoadOrStore(key, d)
	return v.(*direct)
}

type directConn struct {
	nc   net.Conn
	br   *bufio.Reader
	used time.Time // when its last answer was read
}

// get returns an idle connection that is still open, or dials one.
func (d *direct) get(ctx context.Context) (dc *directConn, reused bool, err error) {
	for {
		d.mu.Lock()
		n := len(d.idle)
		if n == 0 {
			d.mu.Unlock()
			break
		}
		dc = d.idle[n-1]
		d.idle[n-1] = nil
		d.idle = d.idle[:n-1]
		d.mu.Unlock()
		if time.Since(dc.used) < directIdleCheck || dc.alive() {
			return dc, true, nil
		}
		dc.nc.Close()
	}
	var dialer net.Dialer
	nc, err := dialer.DialContext(ctx, "tcp", d.addr)
	if err != nil {
		return nil, false, err
	}
	return &directConn{nc: nc, br: bufio.NewReaderSize(nc, 16<<10)}, false, nil
}

// put keeps dc for reuse, or closes it when enough are kept.
func (d *direct) put(dc *directConn) {
	dc.used = time.Now()
	d.mu.Lock()
	if len(d.idle) < MaxIdleConnsPerHost {
		d.idle = append(d.idle, dc)
		dc = nil
		if d.prune == nil {
			d.prune = time.AfterFunc(time.Duration(directIdleMax.Load()), d.closeIdle)
		}
	}
	d.mu.Unlock()
	if dc != nil {
		dc.nc.Close()
	}
}

// closeIdle closes the connections idle for directIdleMax and, while
// others are kept, runs again when the oldest of them is due.
func (d *direct) closeIdle() {
	now, limit := time.Now(), time.Duration(directIdleMax.Load())
	d.mu.Lock()
	var old []*directConn
	i := 0
	for i < len(d.idle) && now.Sub(d.idle[i].used) >= limit {
		i++ // oldest first: idle is in the order of use
	}
	old = append(old, d.idle[:i]...)
	d.idle = append(d.idle[:0], d.idle[i:]...)
	clear(d.idle[len(d.idle):cap(d.idle)])
	d.prune = nil
	if len(d.idle) > 0 {
		d.prune = time.AfterFunc(limit-now.Sub(d.idle[0].used), d.closeIdle)
	}
	d.mu.Unlock()
	for _, dc := range old {
		dc.nc.Close()
	}
}

// alive reports whether the server has not closed dc meanwhile: nothing
// is to be read on an idle connection, not even its end.
func (dc *directConn) alive() bool {
	if dc.br.Buffered() > 0 {
		return false // bytes nobody asked for
	}
	sc, ok := dc.nc.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		open = n < 0 && errors.Is(err, syscall.EAGAIN)
		return true // never wait
	})
	return err == nil && open
}

// errNothingSent marks a request no byte of which reached a reused
// connection: it may be sent again on a new one.
var errNothingSent = errors.New("client: connection closed before the request was sent")

// post sends a POST of body to path and returns the answer as send does:
// an *Error for a status other than 2xx, otherwise the status and body.
func (d *direct) post(ctx context.Context, path, ctype, token string, body []byte) ([]byte, error) {
	hdr := make([]byte, 0, 256+len(token))
	hdr = append(hdr, "POST "...)
	hdr = append(hdr, d.path...)
	hdr = append(hdr, path...)
	hdr = append(hdr, " HTTP/1.1\r\nHost: "...)
	hdr = append(hdr, d.host...)
	hdr = append(hdr, "\r\nUser-Agent: semprop-go-client\r\nContent-Type: "...)
	hdr = append(hdr, ctype...)
	hdr = append(hdr, "\r\nContent-Length: "...)
	hdr = strconv.AppendInt(hdr, int64(len(body)), 10)
	if token != "" {
		hdr = append(hdr, "\r\nAuthorization: Bearer "...)
		hdr = append(hdr, token...)
	}
	hdr = append(hdr, "\r\n\r\n"...)
	for attempt := 0; ; attempt++ {
		dc, reused, err := d.get(ctx)
		if err != nil {
			return nil, err
		}
		out, keep, err := dc.roundTrip(ctx, hdr, body)
		if keep {
			d.put(dc)
		} else {
			dc.nc.Close()
		}
		if errors.Is(err, errNothingSent) && reused && attempt == 0 {
			continue
		}
		return out, err
	}
}

// roundTrip writes one request and reads its answer on dc; keep reports
// whether dc may carry another.
func (dc *directConn) roundTrip(ctx context.Context, hdr, body []byte) (out []byte, keep bool, err error) {
	if err := ctx.Err(); err != nil {
		return nil, true, err
	}
	// A context that ends (cancelled, or at its deadline) ends a blocked
	// write or read at once; the connection is not used again.
	stop := context.AfterFunc(ctx, func() { dc.nc.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() {
			// The deadline was (or is being) set: the connection is done.
			keep = false
			if err != nil && ctx.Err() != nil {
				err = ctx.Err()
			}
		}
	}()
	var n int64
	if len(hdr)+len(body) <= 4<<10 {
		// Small: one write of a copy (writev costs more for tiny parts).
		var buf [4 << 10]byte
		m := copy(buf[:], hdr)
		m += copy(buf[m:], body)
		var w int
		w, err = dc.nc.Write(buf[:m])
		n = int64(w)
	} else {
		bufs := net.Buffers{hdr, body}
		n, err = bufs.WriteTo(dc.nc)
	}
	if err != nil {
		if n == 0 {
			return nil, false, fmt.Errorf("%w: %w", errNothingSent, err)
		}
		// The server may have answered (a 413) and closed before taking
		// the whole body: read what it said.
		if resp, rerr := http.ReadResponse(dc.br, nil); rerr == nil {
			out, _, aerr := readDirectAnswer(resp)
			if aerr != nil {
				return out, false, aerr
			}
			return out, false, nil
		}
		return nil, false, err
	}
	resp, err := http.ReadResponse(dc.br, nil)
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		resp, err = http.ReadResponse(dc.br, nil) // informational (103 Early Hints): the answer follows
	}
	if err != nil {
		if errors.Is(err, io.EOF) && dc.br.Buffered() == 0 {
			// Closed with no answer at all: the request was written but
			// the server may not have read it. Not retried (a publish is
			// not repeated behind the caller's back).
			return nil, false, fmt.Errorf("client: server closed the connection without answering: %w", io.ErrUnexpectedEOF)
		}
		return nil, false, err
	}
	out, complete, err := readDirectAnswer(resp)
	var se *Error
	return out, complete && !resp.Close && (err == nil || errors.As(err, &se)), err
}

// readDirectAnswer reads resp's body (at most maxAnswer bytes): for a 2xx
// status the body, otherwise an *Error as send makes it. complete reports
// whether the body was read to its end.
func readDirectAnswer(resp *http.Response) (out []byte, complete bool, err error) {
	const maxError = 64 << 10
	if resp.StatusCode/100 != 2 {
		b, rerr := io.ReadAll(io.LimitReader(resp.Body, maxError+1))
		complete := rerr == nil && len(b) <= maxError
		return nil, complete, answerError(resp.StatusCode, b[:min(len(b), maxError)])
	}
	b, err := readAnswer(resp)
	if err != nil {
		return nil, false, fmt.Errorf("client: read answer: %w", err)
	}
	// readAnswer read to the end of a body of announced length; one of
	// unknown length (chunked) ended unless it reached maxAnswer.
	if resp.ContentLength >= 0 {
		return b, int64(len(b)) == resp.ContentLength, nil
	}
	return b, len(b) < maxAnswer, nil
}
