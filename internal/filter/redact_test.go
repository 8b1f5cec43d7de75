package filter

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestRedactUnknownField: a rule on a field that is neither a built-in
// attribute nor an extension attribute written attrs.NAME is refused with
// an error that names the field.
func TestRedactUnknownField(t *testing.T) {
	for _, field := range []string{"user", "username", "Comm", "attrs.", "attrs.Bad-Name", "subjekt"} {
		_, err := NewRedactor(RedactSpec{Name: "pol", Rules: []RedactRule{{Field: field, Action: "mask"}}})
		if !errors.Is(err, ErrSpec) || !strings.Contains(fmt.Sprint(err), fmt.Sprintf("%q", field)) {
			t.Errorf("NewRedactor(field %q) error = %v, want ErrSpec naming the field", field, err)
		}
	}
	if _, err := NewRedactor(RedactSpec{Rules: []RedactRule{{Field: "attrs.tenant", Action: "drop"}}}); err != nil {
		t.Errorf("NewRedactor(attrs.tenant) = %v, want ok", err)
	}
}

// TestRedactRevealingFields: redacting a field also redacts the fields
// that reveal the same thing (comm and exe, pid and tid, a path and the
// old path and symlink target of the same event).
func TestRedactRevealingFields(t *testing.T) {
	ev := parseEvent(t, "type=fs.rename subject=/home/alice/new oldpath=/home/alice/old target=/home/alice/t exe=/usr/bin/mkdir comm=mkdir pid=42 tid=42 uid=7")
	for _, tc := range []struct {
		rule  RedactRule
		check func() string
	}{
		{RedactRule{Field: "comm", Action: "mask"}, nil},
		{RedactRule{Field: "exe", Action: "mask", Segments: []int{-1}}, nil},
		{RedactRule{Field: "pid", Action: "drop"}, nil},
		{RedactRule{Field: "subject", Action: "mask", Segments: []int{1}}, nil},
	} {
		r, err := NewRedactor(RedactSpec{Rules: []RedactRule{tc.rule}})
		if err != nil {
			t.Fatal(err)
		}
		out := r.Apply(ev)
		c := out.Context
		switch tc.rule.Field {
		case "comm", "exe":
			if strings.Contains(c.Comm, "mkdir") || strings.Contains(c.Exe, "mkdir") {
				t.Errorf("redact %s: comm=%q exe=%q still reveal mkdir", tc.rule.Field, c.Comm, c.Exe)
			}
		case "pid":
			if c.PID == 42 || c.TID == 42 {
				t.Errorf("redact pid: pid=%d tid=%d still reveal 42", c.PID, c.TID)
			}
		case "subject":
			for _, p := range []string{out.Subject, c.OldPath, c.Target} {
				if strings.Contains(p, "alice") {
					t.Errorf("redact subject: %q still reveals alice", p)
				}
			}
		}
	}
	// An explicit rule for the revealing field wins over the derived one.
	r, err := NewRedactor(RedactSpec{Rules: []RedactRule{{Field: "comm", Action: "mask"}, {Field: "exe", Action: "hash"}}})
	if err != nil {
		t.Fatal(err)
	}
	if out := r.Apply(ev); out.Context.Comm != Mask || !strings.HasPrefix(out.Context.Exe, "h:") {
		t.Errorf("comm mask + exe hash: comm=%q exe=%q, want *** and a hash", out.Context.Comm, out.Context.Exe)
	}
}
