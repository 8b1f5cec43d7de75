package output

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"golang.org/x/sys/unix"

	"github.com/semprop/semprop/event"
)

// SyslogConfig configures a syslog output: RFC 5424 messages over TCP or
// TLS, one line per event (or octet-counted frames, RFC 6587).
type SyslogConfig struct {
	// Address is host:port of the collector.
	Address string `yaml:"address" json:"address"`
	// TLS connects with TLS (RFC 5425); CAFile verifies the collector
	// instead of the system's roots.
	TLS    bool   `yaml:"tls,omitempty" json:"tls,omitempty"`
	CAFile string `yaml:"ca_file,omitempty" json:"ca_file,omitempty"`
	// Framing is "newline" (default: one line per event; line feeds in
	// the message become spaces) or "octet-counting".
	Framing string `yaml:"framing,omitempty" json:"framing,omitempty"`
	// Facility is the syslog facility number (default 16, local0).
	Facility int `yaml:"facility,omitempty" json:"facility,omitempty"`
	// AppName is the APP-NAME field (default semprop); Hostname the
	// HOSTNAME field (default the host's name).
	AppName  string `yaml:"app_name,omitempty" json:"app_name,omitempty"`
	Hostname string `yaml:"hostname,omitempty" json:"hostname,omitempty"`
	// Template is a Go text/template of the MSG part over the event
	// (.Type, .Subject, .Source, .Seq, .ID, .Context.PID, .Context.Comm,
	// ...); default `{{.Type}} {{.Subject}}`.
	Template string `yaml:"template,omitempty" json:"template,omitempty"`
	// Timeout bounds dialing and one batch's write (default 10s).
	Timeout time.Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
}

const defaultSyslogTemplate = `{{.Type}} {{.Subject}}`

func (c *SyslogConfig) validate() error {
	if c == nil || c.Address == "" {
		return errors.New("address is required")
	}
	if _, _, err := net.SplitHostPort(c.Address); err != nil {
		return fmt.Errorf("address %q: %w", c.Address, err)
	}
	if c.Framing != "" && c.Framing != "newline" && c.Framing != "octet-counting" {
		return fmt.Errorf("framing %q: want newline or octet-counting", c.Framing)
	}
	if c.Facility < 0 || c.Facility > 23 {
		return fmt.Errorf("facility %d: want 0-23", c.Facility)
	}
	if c.Timeout < 0 {
		return errors.New("timeout must not be negative")
	}
	if c.Template != "" {
		if _, err := template.New("syslog").Parse(c.Template); err != nil {
			return fmt.Errorf("template: %w", err)
		}
	}
	return nil
}

type syslogSink struct {
	cfg  SyslogConfig
	tmpl *template.Template
	tls  *tls.Config
	conn net.Conn
	w    *bufio.Writer
	msg  strings.Builder
	line []byte
}

var _ sink = (*syslogSink)(nil)

func newSyslog(c *SyslogConfig) (*syslogSink, error) {
	cfg := *c
	if cfg.Framing == "" {
		cfg.Framing = "newline"
	}
	if cfg.Facility == 0 {
		cfg.Facility = 16
	}
	if cfg.AppName == "" {
		cfg.AppName = "semprop"
	}
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
	}
	if cfg.Template == "" {
		cfg.Template = defaultSyslogTemplate
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	t, err := template.New("syslog").Option("missingkey=zero").Parse(cfg.Template)
	if err != nil {
		return nil, fmt.Errorf("syslog: template: %w", err)
	}
	s := &syslogSink{cfg: cfg, tmpl: t}
	if cfg.TLS {
		host, _, _ := net.SplitHostPort(cfg.Address)
		s.tls = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("syslog: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("syslog: %s: no certificate", cfg.CAFile)
			}
			s.tls.RootCAs = pool
		}
	}
	return s, nil
}

// severity maps an event's priority to a syslog severity.
func severity(p event.Priority) int {
	switch p.String() {
	case "critical":
		return 2
	case "high":
		return 4
	case "bulk":
		return 6
	default:
		return 5 // notice
	}
}

// appendLine appends the RFC 5424 message of ev.
func (s *syslogSink) appendLine(b []byte, ev *event.Event) ([]byte, error) {
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(s.cfg.Facility*8+severity(ev.Priority)), 10)
	b = append(b, ">1 "...)
	ts := ev.Time
	if ts.IsZero() {
		ts = time.Now()
	}
	b = ts.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, ' ')
	b = appendHeaderField(b, s.cfg.Hostname, 255)
	b = append(b, ' ')
	b = appendHeaderField(b, s.cfg.AppName, 48)
	b = append(b, ' ')
	if ev.Context.Known&event.HasPID != 0 {
		b = strconv.AppendInt(b, int64(ev.Context.PID), 10)
	} else {
		b = append(b, '-')
	}
	b = append(b, ' ')
	b = appendHeaderField(b, ev.Type, 32)
	b = append(b, ` [semprop@32473 seq="`...)
	b = strconv.AppendUint(b, ev.Seq, 10)
	b = append(b, `" id="`...)
	b = appendSDValue(b, msgID(ev))
	b = append(b, `" source="`...)
	b = appendSDValue(b, ev.Source)
	b = append(b, `"] `...)
	s.msg.Reset()
	if err := s.tmpl.Execute(&s.msg, ev); err != nil {
		return b, fmt.Errorf("%w: syslog: template: %w", ErrRejected, err)
	}
	m := s.msg.String()
	if s.cfg.Framing == "newline" {
		m = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(m)
	}
	return append(b, m...), nil
}

// appendHeaderField appends a header field: printable ASCII, at most max
// bytes, "-" when empty.
func appendHeaderField(b []byte, v string, max int) []byte {
	if v == "" {
		return append(b, '-')
	}
	for i := 0; i < len(v) && i < max; i++ {
		c := v[i]
		if c < 33 || c > 126 {
			c = '_'
		}
		b = append(b, c)
	}
	return b
}

// appendSDValue escapes '"', '\' and ']' in a structured data value.
func appendSDValue(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '"', '\\', ']':
			b = append(b, '\\', c)
		case '\n', '\r':
			b = append(b, ' ')
		default:
			b = append(b, c)
		}
	}
	return b
}

func (s *syslogSink) dial(ctx context.Context) error {
	d := &net.Dialer{Timeout: s.cfg.Timeout}
	var (
		c   net.Conn
		err error
	)
	if s.tls != nil {
		c, err = (&tls.Dialer{NetDialer: d, Config: s.tls}).DialContext(ctx, "tcp", s.cfg.Address)
	} else {
		c, err = d.DialContext(ctx, "tcp", s.cfg.Address)
	}
	if err != nil {
		return fmt.Errorf("syslog: %w", err)
	}
	s.conn, s.w = c, bufio.NewWriterSize(c, 64<<10)
	return nil
}

// Send writes one message per event. The collector does not acknowledge:
// a batch counts as sent once written to the connection.
func (s *syslogSink) Send(ctx context.Context, evs []*event.Event) error {
	if s.conn != nil && !alive(s.conn) {
		s.conn.Close()
		s.conn = nil
	}
	if s.conn == nil {
		if err := s.dial(ctx); err != nil {
			return err
		}
	}
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.cfg.Timeout))
	for _, ev := range evs {
		var err error
		s.line, err = s.appendLine(s.line[:0], ev)
		if err != nil {
			return err
		}
		if s.cfg.Framing == "octet-counting" {
			s.w.WriteString(strconv.Itoa(len(s.line)))
			s.w.WriteByte(' ')
			s.w.Write(s.line)
		} else {
			s.w.Write(s.line)
			s.w.WriteByte('\n')
		}
	}
	if err := s.w.Flush(); err != nil {
		s.conn.Close()
		s.conn = nil
		return fmt.Errorf("syslog: %w", err)
	}
	return nil
}

// alive reports whether the collector has not closed c: a write to a
// connection the peer closed still succeeds once, and what it carried
// would be lost. It asks the socket without blocking (a read with a short
// deadline is not enough: when the deadline has passed before the read
// starts, as on a busy machine, Go reports a timeout without looking).
// Bytes the collector sent (TLS session tickets, an alert) are read so
// that an end of stream behind them is seen.
func alive(c net.Conn) bool {
	raw := c
	if tc, ok := c.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	sc, ok := raw.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var b [512]byte
	for range 8 {
		switch peek(rc) {
		case peerIdle:
			return true
		case peerGone:
			return false
		}
		_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, err := c.Read(b[:])
		_ = c.SetReadDeadline(time.Time{})
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			return false
		}
	}
	return true
}

const (
	peerIdle = iota // nothing to read: open
	peerGone        // end of stream or an error
	peerSent        // bytes waiting
)

func peek(rc syscall.RawConn) int {
	state := peerGone
	var b [1]byte
	err := rc.Read(func(fd uintptr) bool {
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case err == unix.EAGAIN:
			state = peerIdle
		case err == nil && n > 0:
			state = peerSent
		}
		return true
	})
	if err != nil {
		return peerGone
	}
	return state
}

func (s *syslogSink) Close() error {
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}
