package journal

import (
	"strings"
	"testing"
	"time"
)

func TestLimitedLog(t *testing.T) {
	log, buf := bufLogger()
	now := time.Unix(1000, 0)
	l := newLimitedLog(log, 10*time.Second, func() time.Time { return now })
	for i := range 1000 {
		l.Log(-4, "disk full", "i", i) // debug
	}
	l.Log(0, "other", "k", 1)
	now = now.Add(11 * time.Second)
	l.Log(-4, "disk full", "i", 1000)
	l.Log(-4, "disk full", "i", 1001)
	l.Flush()
	l.Log(-4, "disk full", "i", 1002)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{
		`msg="disk full" i=0`,
		`msg=other k=1`,
		`msg="disk full" i=1000 repeated=999`,
		`msg="disk full" i=1001 repeated=1`,
		`msg="disk full" i=1002`,
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), buf)
	}
	for i, w := range want {
		if !strings.HasSuffix(lines[i], w) {
			t.Errorf("line %d = %q, want it to end with %q", i, lines[i], w)
		}
	}
}
