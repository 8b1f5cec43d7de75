package output

import (
	"strings"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
)

// FuzzRetryAfter: a target's Retry-After header never yields a negative
// pause, and never panics.
func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"", "0", "120", " 3 ", "-1", "Wed, 21 Oct 2015 07:28:00 GMT", "soon", "99999999999999999999"} {
		f.Add(s)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := retryAfter(v, now)
		if ok && d < 0 {
			t.Errorf("retryAfter(%q) = %v", v, d)
		}
		if !ok && d != 0 {
			t.Errorf("retryAfter(%q) = %v, false", v, d)
		}
	})
}

// FuzzSubjectAndHeaders: whatever an event's type and path hold, the NATS
// subject has no empty token, space or wildcard, and a binary-mode header
// value holds only what the HTTP binding allows raw.
func FuzzSubjectAndHeaders(f *testing.F) {
	for _, s := range [][2]string{{"fs.write", "/srv/a/b.md"}, {"fs.write", ""}, {"x", "/a b/*/>/c"}, {"fs.write", "//..//"}, {"t", "é\x00\"%"}} {
		f.Add(s[0], s[1])
	}
	tmpl, err := parseSubjectTemplate("semprop.{type}.{path}")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, typ, path string) {
		s := tmpl.expand(&event.Event{Type: typ, Subject: path})
		if s == "" || strings.ContainsAny(s, " \t\r\n*>") || strings.Contains(s, "..") || strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") {
			t.Errorf("subject of (%q, %q) = %q", typ, path, s)
		}
		h := headerEscape(path)
		for i := 0; i < len(h); i++ {
			if c := h[i]; c <= ' ' || c >= 0x7f || c == '"' {
				t.Errorf("headerEscape(%q) = %q holds %q", path, h, c)
			}
		}
	})
}

// FuzzPubAck: the fast path of the publish ack parser agrees with the
// encoding/json one (what nats.go does): what it accepts, that accepts.
func FuzzPubAck(f *testing.F) {
	for _, s := range []string{`{"stream":"SEMPROP","seq":12}`, `{"stream":"S","seq":3,"duplicate":true}`,
		`{"stream":"S","domain":"hub","seq":1}`, `{"error":{"code":503,"err_code":10077,"description":"no"}}`,
		`{"stream":"","seq":1}`, `{"stream":"S","seq":1,"error":{"code":400}}`, `{"stream":"S"`, `{"stream":"S","stream":""}`,
		`{"stream":"S","Stream":""}`, `{"stream":"S","ERROR":{}}`, ``, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		slow := pubAckSlow(b)
		if pubAckFast(b) && slow != nil {
			t.Fatalf("pubAckFast(%q) = true, but encoding/json says %v", b, slow)
		}
		if err := pubAckErr(b, nil); (err == nil) != (slow == nil) {
			t.Fatalf("pubAckErr(%q) = %v, encoding/json %v", b, err, slow)
		}
	})
}

// FuzzFastBatchAnswer: the answers to fast batch messages (flow acks, gap
// and error notices, the final publish ack) and their reply subjects
// decode without panicking, and an answer carrying an error is never
// taken for an ack.
func FuzzFastBatchAnswer(f *testing.F) {
	for _, s := range []struct{ subject, data string }{
		{"b.500.fail.12.1.$FI", `{"type":"ack","seq":500,"msgs":500}`},
		{"b.500.fail.1.0.$FI", `{"type":"ack","seq":0,"msgs":500}`},
		{"b.500.fail.13.1.$FI", `{"type":"gap","last_seq":12,"seq":13}`},
		{"b.500.fail.13.1.$FI", `{"type":"err","seq":13,"error":{"code":400,"err_code":10054,"description":"too large"}}`},
		{"b.500.fail.1001.3.$FI", `{"stream":"SEMPROP","seq":99,"batch":"b","count":1000}`},
		{"b.500.fail.1.0.$FI", `{"error":{"code":400,"err_code":10205,"description":"batch publish is disabled"},"stream":"S"}`},
		{"b.500.fail.x.0.$FI", ``},
		{"b", `null`},
	} {
		f.Add(s.subject, []byte(s.data))
	}
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		if _, seq, ok := parseFastReply(subject); ok && !strings.HasSuffix(subject, "$FI") {
			t.Fatalf("parseFastReply(%q) = %d, ok without the $FI suffix", subject, seq)
		}
		a, err := parseFastAnswer(data, nil)
		if a.Error != nil && err == nil {
			t.Fatalf("parseFastAnswer(%q): an error answer without an error", data)
		}
		if len(data) == 0 && err == nil {
			t.Fatal("parseFastAnswer(empty) = nil error")
		}
	})
}
