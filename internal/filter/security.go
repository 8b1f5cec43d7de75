package filter

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/filter/glob"
)

// Glob returns a filter that passes events whose attribute matches a path
// pattern (see package glob: "**", "*", "?", classes, braces, "re:").
func Glob(attr, pattern string) (Filter, error) {
	f, err := lookupField(attr)
	if err != nil {
		return nil, err
	}
	if f.numeric() {
		return nil, errorf(ErrSpec, "attribute %q is numeric, not a path", attr)
	}
	p, err := glob.Compile(pattern)
	if err != nil {
		return nil, errorf(ErrSpec, "attribute %q: %w", attr, err)
	}
	cost := costGlob
	if strings.HasPrefix(pattern, glob.RegexpPrefix) {
		cost = costRegexp
	}
	n := &native{kind: "glob", desc: fmt.Sprintf("%s~%q", attr, pattern), cost: cost, rs: f.reads()}
	if attr == "subject" || attr == "path" {
		n.match = func(ev *event.Event) bool { return p.Match(ev.Subject) }
		return n, nil
	}
	n.match = func(ev *event.Event) bool {
		s, ok := f.strVal(ev)
		return ok && p.Match(s)
	}
	return n, nil
}

// Deny returns a security filter that rejects events touching a protected
// path: one whose subject, old path (renames, links) or symlink target
// matches any of the patterns, e.g. "**/.ssh/**" or "**/*.key". Put it in
// front of a subscriber that must not learn about such files.
func Deny(patterns ...string) (Filter, error) {
	if len(patterns) == 0 {
		return nil, errorf(ErrSpec, "deny: no patterns")
	}
	ps := make([]*glob.Pattern, len(patterns))
	for i, s := range patterns {
		p, err := glob.Compile(s)
		if err != nil {
			return nil, errorf(ErrSpec, "deny[%d]: %w", i, err)
		}
		ps[i] = p
	}
	denied := func(path string) bool {
		if path == "" {
			return false
		}
		for _, p := range ps {
			if p.Match(path) {
				return true
			}
		}
		return false
	}
	return &native{
		kind: "deny",
		desc: strings.Join(patterns, ", "),
		cost: costGlob * len(ps),
		rs:   builtins["subject"].reads().union(builtins["oldpath"].reads()).union(builtins["target"].reads()),
		match: func(ev *event.Event) bool {
			return !denied(ev.Subject) && !denied(ev.Context.OldPath) && !denied(ev.Context.Target)
		},
	}, nil
}

// MustDeny is Deny that panics on a bad pattern, for patterns in code.
func MustDeny(patterns ...string) Filter {
	f, err := Deny(patterns...)
	if err != nil {
		panic(err)
	}
	return f
}

// RedactSpec configures a Redactor: the rules it applies, in order.
type RedactSpec struct {
	// Name names the policy in error messages.
	Name string `json:"name,omitempty" yaml:"name,omitempty"`
	// Key keys the hashes (HMAC-SHA256) so that hashed values cannot be
	// recovered by hashing guesses. Without a key, hashes are plain SHA-256.
	Key   string       `json:"key,omitempty" yaml:"key,omitempty"`
	Rules []RedactRule `json:"rules" yaml:"rules"`
}

// RedactRule hides one field.
type RedactRule struct {
	// Field is subject (or path), oldpath, target, exe, comm, source, pid,
	// tid, uid, gid, data, or the name of an extension attribute.
	Field string `json:"field" yaml:"field"`
	// Action is "mask" (replace by "***"), "hash" (replace by a stable
	// pseudonym) or "drop" (remove the field).
	Action string `json:"action" yaml:"action"`
	// Segments limits the action on a path field to these components,
	// counted from 0 after the leading "/"; negative counts from the end
	// (-1 is the base name). Empty means the whole value.
	Segments []int `json:"segments,omitempty" yaml:"segments,omitempty"`
}

// Mask replaces a masked string or path component.
const Mask = "***"

// Redactor hides fields of events for one subscription. It never modifies
// the event it is given: Apply returns the same pointer when nothing needs
// hiding, and a redacted copy otherwise. A Redactor is immutable and safe
// for concurrent use.
type Redactor struct {
	name  string
	key   []byte
	rules []RedactRule
}

var redactable = map[string]bool{
	"subject": true, "path": true, "oldpath": true, "target": true, "exe": true, "comm": true,
	"source": true, "pid": true, "tid": true, "uid": true, "gid": true, "data": true,
}

var pathFields = map[string]bool{"subject": true, "path": true, "oldpath": true, "target": true, "exe": true}

// NewRedactor validates spec and returns its Redactor. Errors wrap ErrSpec
// and name the policy and the rule.
func NewRedactor(spec RedactSpec) (*Redactor, error) {
	r := &Redactor{name: spec.Name, rules: spec.Rules}
	if spec.Key != "" {
		r.key = []byte(spec.Key)
	}
	if len(spec.Rules) == 0 {
		return nil, errorf(ErrSpec, "redact %q: no rules", spec.Name)
	}
	for i, rule := range spec.Rules {
		if err := checkRule(rule); err != nil {
			return nil, fmt.Errorf("redact %q: rule %d (%s): %w", spec.Name, i, rule.Field, err)
		}
	}
	return r, nil
}

func checkRule(rule RedactRule) error {
	if !redactable[rule.Field] && !validAttrName(rule.Field) {
		return errorf(ErrSpec, "cannot redact field %q", rule.Field)
	}
	if builtins[rule.Field] != nil && !redactable[rule.Field] {
		return errorf(ErrSpec, "cannot redact field %q", rule.Field)
	}
	switch rule.Action {
	case "mask", "hash", "drop":
	default:
		return errorf(ErrSpec, "unknown action %q (want mask, hash or drop)", rule.Action)
	}
	if len(rule.Segments) > 0 && !pathFields[rule.Field] {
		return errorf(ErrSpec, "segments apply only to path fields, not %q", rule.Field)
	}
	if rule.Field == "data" && rule.Action != "drop" {
		return errorf(ErrSpec, "data can only be dropped")
	}
	return nil
}

// Apply returns ev with the configured fields hidden. It returns ev itself
// when no rule changes anything, and otherwise a shallow copy (Data is
// shared, read-only); ev is never modified.
func (r *Redactor) Apply(ev *event.Event) *event.Event {
	var out *event.Event
	cp := func() *event.Event {
		if out == nil {
			c := *ev
			out = &c
		}
		return out
	}
	for _, rule := range r.rules {
		switch rule.Field {
		case "subject", "path":
			if v, ok := r.redactString(ev.Subject, rule); ok {
				cp().Subject = v
			}
		case "oldpath":
			if v, ok := r.redactString(ev.Context.OldPath, rule); ok {
				cp().Context.OldPath = v
			}
		case "target":
			if v, ok := r.redactString(ev.Context.Target, rule); ok {
				cp().Context.Target = v
			}
		case "exe":
			if v, ok := r.redactString(ev.Context.Exe, rule); ok {
				cp().Context.Exe = v
			}
		case "comm":
			if v, ok := r.redactString(ev.Context.Comm, rule); ok {
				cp().Context.Comm = v
			}
		case "source":
			if v, ok := r.redactString(ev.Source, rule); ok {
				cp().Source = v
			}
		case "pid", "tid", "uid", "gid":
			r.redactNumber(ev, rule, cp)
		case "data":
			if ev.Data != nil {
				c := cp()
				c.Data, c.DataContentType = nil, ""
			}
		default:
			v, ok := ev.Attr(rule.Field)
			if !ok {
				continue
			}
			c := cp()
			if &c.Attrs[0] == &ev.Attrs[0] {
				c.Attrs = append([]event.Attr(nil), ev.Attrs...)
			}
			if rule.Action == "drop" {
				c.Attrs = deleteAttr(c.Attrs, rule.Field)
				continue
			}
			nv, _ := r.redactString(v, rule)
			c.SetAttr(rule.Field, nv)
		}
	}
	if out == nil {
		return ev
	}
	return out
}

func deleteAttr(attrs []event.Attr, key string) []event.Attr {
	out := attrs[:0]
	for _, a := range attrs {
		if a.Key != key {
			out = append(out, a)
		}
	}
	return out
}

// redactString returns the redacted form of s and whether it differs.
func (r *Redactor) redactString(s string, rule RedactRule) (string, bool) {
	if s == "" {
		return "", false
	}
	if len(rule.Segments) == 0 {
		switch rule.Action {
		case "drop":
			return "", true
		case "mask":
			return Mask, s != Mask
		}
		return r.hash(s), true
	}
	parts := strings.Split(s, "/")
	first := 0
	if strings.HasPrefix(s, "/") {
		first = 1
	}
	n := len(parts) - first
	changed := false
	for _, seg := range rule.Segments {
		i := seg
		if i < 0 {
			i += n
		}
		if i < 0 || i >= n || parts[first+i] == "" {
			continue
		}
		switch rule.Action {
		case "hash":
			parts[first+i] = r.hash(parts[first+i])
		default:
			parts[first+i] = Mask
		}
		changed = true
	}
	if !changed {
		return s, false
	}
	return strings.Join(parts, "/"), true
}

func (r *Redactor) sum(s string) []byte {
	if r.key != nil {
		m := hmac.New(sha256.New, r.key)
		m.Write([]byte(s))
		return m.Sum(nil)
	}
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// hash returns a stable pseudonym: "h:" and 16 hex digits.
func (r *Redactor) hash(s string) string { return "h:" + hex.EncodeToString(r.sum(s)[:8]) }

func (r *Redactor) redactNumber(ev *event.Event, rule RedactRule, cp func() *event.Event) {
	bits := map[string]event.Fields{"pid": event.HasPID, "tid": event.HasTID, "uid": event.HasUID, "gid": event.HasGID}[rule.Field]
	if ev.Context.Known&bits == 0 {
		return
	}
	c := cp()
	if rule.Action != "hash" {
		c.Context.Known &^= bits
		switch rule.Field {
		case "pid":
			c.Context.PID = 0
		case "tid":
			c.Context.TID = 0
		case "uid":
			c.Context.UID = 0
		case "gid":
			c.Context.GID = 0
		}
		return
	}
	var v uint64
	switch rule.Field {
	case "pid":
		v = uint64(ev.Context.PID)
	case "tid":
		v = uint64(ev.Context.TID)
	case "uid":
		v = uint64(ev.Context.UID)
	case "gid":
		v = uint64(ev.Context.GID)
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	h := binary.LittleEndian.Uint32(r.sum(rule.Field + ":" + string(b[:])))
	switch rule.Field {
	case "pid":
		c.Context.PID = int32(h &^ (1 << 31))
	case "tid":
		c.Context.TID = int32(h &^ (1 << 31))
	case "uid":
		c.Context.UID = h
	case "gid":
		c.Context.GID = h
	}
}
