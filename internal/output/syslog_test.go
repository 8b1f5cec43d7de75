package output

import (
	"bufio"
	"net"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
)

// syslogd is a TCP syslog collector: it reads newline-framed messages,
// and can stop (closing its connections and refusing new ones) and start
// again on the same port.
type syslogd struct {
	t     *testing.T
	addr  string
	mu    sync.Mutex
	lines []string
	l     net.Listener
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func newSyslogd(t *testing.T) *syslogd {
	c := &syslogd{t: t, conns: map[net.Conn]bool{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.addr = l.Addr().String()
	c.serve(l)
	t.Cleanup(c.stop)
	return c
}

func (c *syslogd) serve(l net.Listener) {
	c.mu.Lock()
	c.l = l
	c.mu.Unlock()
	c.wg.Go(func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			c.mu.Lock()
			c.conns[conn] = true
			c.mu.Unlock()
			c.wg.Go(func() {
				sc := bufio.NewScanner(conn)
				for sc.Scan() {
					c.mu.Lock()
					c.lines = append(c.lines, sc.Text())
					c.mu.Unlock()
				}
			})
		}
	})
}

// stop closes the listener and the connections, once every line sent so
// far was read (a collector going down cleanly between messages).
func (c *syslogd) stop() {
	c.mu.Lock()
	l := c.l
	c.l = nil
	conns := c.conns
	c.conns = map[net.Conn]bool{}
	c.mu.Unlock()
	if l == nil {
		return
	}
	l.Close()
	// A read past its deadline fails even with data waiting: give a
	// reader slowed down by -race on a busy machine time to take the
	// lines sent so far (50 ms lost some).
	for conn := range conns {
		_ = conn.(*net.TCPConn).CloseWrite()
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	}
	c.wg.Wait()
	for conn := range conns {
		conn.Close()
	}
}

func (c *syslogd) restart() {
	for range 100 {
		l, err := net.Listen("tcp", c.addr)
		if err == nil {
			c.serve(l)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Errorf("cannot listen on %s again", c.addr)
}

func (c *syslogd) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines...)
}

var rfc5424 = regexp.MustCompile(`^<(\d+)>1 (\S+) (\S+) (\S+) (\S+) (\S+) \[semprop@32473 seq="(\d+)" id="([^"]*)" source="([^"]*)"\] (.*)$`)

func TestSyslogLines(t *testing.T) {
	e := newEnv(t)
	c := newSyslogd(t)
	r := start(t, e, Options{Outputs: []Config{{Name: "s", Type: TypeSyslog, Syslog: &SyslogConfig{Address: c.addr, Hostname: "h1",
		Template: "{{.Type}} {{.Subject}} by {{.Context.Comm}}"}}}})
	ev := &event.Event{Type: "fs.write", Subject: "/etc/pass\nwd", Priority: event.PriorityHigh}
	ev.Context.SetPID(7)
	ev.Context.Comm = "vi"
	if err := e.m.PublishBatch(t.Context(), []*event.Event{ev}); err != nil {
		t.Fatal(err)
	}
	r.waitSent(t, "s", 1)
	deadline := time.Now().Add(5 * time.Second)
	for len(c.got()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	lines := c.got()
	if len(lines) != 1 {
		t.Fatalf("%d lines, want 1: %q", len(lines), lines)
	}
	m := rfc5424.FindStringSubmatch(lines[0])
	if m == nil {
		t.Fatalf("line %q is not RFC 5424", lines[0])
	}
	if m[1] != strconv.Itoa(16*8+4) || m[3] != "h1" || m[4] != "semprop" || m[5] != "7" || m[6] != "fs.write" || m[7] != "1" ||
		m[8] != ev.ID.String() || m[10] != "fs.write /etc/pass wd by vi" {
		t.Errorf("line %q: fields %q", lines[0], m[1:])
	}
	if _, err := time.Parse(time.RFC3339Nano, m[2]); err != nil {
		t.Errorf("timestamp %q: %v", m[2], err)
	}
}

func TestSyslogCollectorRestarts(t *testing.T) {
	e := newEnv(t)
	c := newSyslogd(t)
	r := start(t, e, Options{Outputs: []Config{{Name: "s", Type: TypeSyslog, BatchSize: 20,
		Retry:  RetryConfig{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond},
		Syslog: &SyslogConfig{Address: c.addr, Template: "{{.Subject}}"}}}})
	e.publish(t, "fs.write", 200, 5)
	r.waitSent(t, "s", 200)
	c.stop()
	e.publish(t, "fs.write", 200, 5) // the collector refuses connections
	time.Sleep(200 * time.Millisecond)
	if in := r.o.Infos()[0]; in.State != StateRetrying || in.Sent != 200 {
		t.Errorf("while the collector is down: state %s sent %d, want retrying and 200", in.State, in.Sent)
	}
	c.restart()
	r.waitSent(t, "s", 400)
	// Sent means written to the connection: wait for the collector to
	// have read it.
	lines := c.got()
	for deadline := time.Now().Add(10 * time.Second); len(lines) < 400 && time.Now().Before(deadline); lines = c.got() {
		time.Sleep(5 * time.Millisecond)
	}
	var seqs []int
	for _, l := range lines {
		m := rfc5424.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("line %q", l)
		}
		s, _ := strconv.Atoi(m[7])
		seqs = append(seqs, s)
	}
	if len(seqs) != 400 {
		t.Fatalf("%d lines, want 400", len(seqs))
	}
	for i, s := range seqs {
		if s != i+1 {
			t.Fatalf("line %d holds seq %d: lost or out of order", i, s)
		}
	}
}

// TestAliveSeesClosedPeer checks the connection test the syslog output
// runs before each batch: a collector that closed (cleanly or with a
// reset) is seen as gone however late the check runs, one that is open
// or sent bytes is alive, and bytes it sent do not hide its end of stream.
func TestAliveSeesClosedPeer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	pair := func() (client, server net.Conn) {
		t.Helper()
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(); s.Close() })
		return c, s
	}
	settle := func() { time.Sleep(20 * time.Millisecond) }

	c, _ := pair()
	if !alive(c) {
		t.Error("open connection: not alive")
	}

	c, s := pair()
	s.(*net.TCPConn).CloseWrite()
	settle()
	for i := range 1000 { // the old check, a 1 ms read deadline, said alive when the read started late
		if alive(c) {
			t.Fatalf("check %d: peer closed, alive", i)
		}
	}

	c, s = pair()
	s.Write([]byte("x"))
	settle()
	if !alive(c) {
		t.Error("peer sent a byte: not alive")
	}
	s.Write([]byte("yz"))
	s.(*net.TCPConn).CloseWrite()
	settle()
	if alive(c) {
		t.Error("peer sent bytes then closed: alive")
	}

	c, s = pair()
	s.(*net.TCPConn).SetLinger(0)
	s.Close() // a reset
	settle()
	if alive(c) {
		t.Error("peer reset: alive")
	}
}
