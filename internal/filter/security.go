package filter

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"path"
	"slices"
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
// matches any of the patterns, e.g. "**/.ssh" or "**/*.key".
//
// A deny pattern names a tree: it denies the paths it matches and
// everything below them (glob.CompileTree), so "**/.ssh" denies the
// directory and its contents, like "**/.ssh/**", and "*.key" denies a
// file x.key and a directory x.key with its contents. Paths are cleaned
// ("/a/../.ssh/k" is "/.ssh/k") before matching, and a relative symlink
// target is resolved against the link's directory. Put it in front of a
// subscriber that must not learn about such files.
func Deny(patterns ...string) (Filter, error) {
	if len(patterns) == 0 {
		return nil, errorf(ErrSpec, "deny: no patterns")
	}
	ps := make([]*glob.Pattern, len(patterns))
	for i, s := range patterns {
		p, err := glob.CompileTree(s)
		if err != nil {
			return nil, errorf(ErrSpec, "deny[%d]: %w", i, err)
		}
		ps[i] = p
	}
	matches := func(p string) bool {
		for _, g := range ps {
			if g.Match(p) {
				return true
			}
		}
		return false
	}
	denied := func(p string) bool {
		if p == "" {
			return false
		}
		if matches(p) {
			return true
		}
		// Only paths that are not clean allocate.
		return !isClean(p) && matches(path.Clean(p))
	}
	return &native{
		kind: "deny",
		desc: strings.Join(patterns, ", "),
		cost: costGlob * len(ps),
		rs:   builtins["subject"].reads().union(builtins["oldpath"].reads()).union(builtins["target"].reads()),
		match: func(ev *event.Event) bool {
			if denied(ev.Subject) || denied(ev.Context.OldPath) {
				return false
			}
			t := ev.Context.Target
			if t == "" {
				return true
			}
			if !denied(t) && (t[0] == '/' || !strings.HasPrefix(ev.Subject, "/") ||
				!denied(path.Join(path.Dir(ev.Subject), t))) {
				return true
			}
			return false
		},
	}, nil
}

// isClean reports whether path.Clean(p) == p, without allocating.
func isClean(p string) bool {
	switch p {
	case "":
		return false
	case "/", ".":
		return true
	}
	if p[len(p)-1] == '/' {
		return false
	}
	start := 0
	if p[0] == '/' {
		start = 1
	}
	leading := start == 0 // a relative path may start with ".." segments
	for i := start; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			continue
		}
		switch p[start:i] {
		case "", ".":
			return false
		case "..":
			if !leading {
				return false
			}
		default:
			leading = false
		}
		start = i + 1
	}
	return true
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
	// tid, uid, gid, data, or an extension attribute written attrs.NAME
	// (e.g. attrs.tenant). Any other name is refused.
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

// AttrPrefix introduces an extension attribute in a RedactRule's Field.
const AttrPrefix = "attrs."

// Redactor hides fields of events for one subscription. It never modifies
// the event it is given: Apply returns the same pointer when nothing needs
// hiding, and a redacted copy otherwise.
//
// Redacting a field also redacts the fields that reveal the same thing,
// unless a rule of the spec names them itself:
//
//   - comm ⇒ exe and exe ⇒ comm (comm is the executable's base name), with
//     the same action on the whole value;
//   - pid ⇒ tid and tid ⇒ pid (a process's main thread has tid = pid);
//   - subject (path) ⇒ oldpath and target (a rename's old path and a
//     symlink's target name the same directories), with the same action
//     and segments;
//   - data ⇒ datacontenttype (dropped together).
//
// A Redactor is immutable and safe for concurrent use; a nil *Redactor
// hides nothing.
type Redactor struct {
	name  string
	key   []byte
	rules []RedactRule // explicit rules, then derived ones; Field canonical
	// hidden lists the canonical names of the fields the rules change:
	// built-in names ("subject", never "path") and "attrs.NAME".
	hidden []string
}

var redactable = map[string]bool{
	"subject": true, "path": true, "oldpath": true, "target": true, "exe": true, "comm": true,
	"source": true, "pid": true, "tid": true, "uid": true, "gid": true, "data": true,
}

var pathFields = map[string]bool{"subject": true, "path": true, "oldpath": true, "target": true, "exe": true}

// reveals maps a field to the fields that reveal the same thing; a rule on
// the field is copied onto them (see Redactor).
var reveals = map[string][]string{
	"comm":    {"exe"},
	"exe":     {"comm"},
	"pid":     {"tid"},
	"tid":     {"pid"},
	"subject": {"oldpath", "target"},
}

// redactableNames is the list of built-in fields in error messages.
const redactableNames = "subject, path, oldpath, target, exe, comm, source, pid, tid, uid, gid, data"

// NewRedactor validates spec and returns its Redactor. Errors wrap ErrSpec
// and name the policy, the rule and the field.
func NewRedactor(spec RedactSpec) (*Redactor, error) {
	r := &Redactor{name: spec.Name}
	if spec.Key != "" {
		r.key = []byte(spec.Key)
	}
	if len(spec.Rules) == 0 {
		return nil, errorf(ErrSpec, "redact %q: no rules", spec.Name)
	}
	explicit := map[string]bool{}
	for i, rule := range spec.Rules {
		if err := checkRule(rule); err != nil {
			return nil, fmt.Errorf("redact %q: rule %d (%s): %w", spec.Name, i, rule.Field, err)
		}
		rule.Field = canonicalRedactField(rule.Field)
		explicit[rule.Field] = true
		r.rules = append(r.rules, rule)
	}
	for _, rule := range r.rules[:len(r.rules):len(r.rules)] {
		for _, f := range reveals[rule.Field] {
			if explicit[f] {
				continue
			}
			explicit[f] = true
			d := RedactRule{Field: f, Action: rule.Action}
			if pathFields[rule.Field] && pathFields[f] {
				d.Segments = rule.Segments
			}
			r.rules = append(r.rules, d)
		}
	}
	for f := range explicit {
		r.hidden = append(r.hidden, f)
	}
	if explicit["data"] {
		r.hidden = append(r.hidden, "datacontenttype")
	}
	slices.Sort(r.hidden)
	return r, nil
}

// canonicalRedactField maps a valid rule field to its canonical name.
func canonicalRedactField(f string) string {
	if f == "path" {
		return "subject"
	}
	return f
}

func checkRule(rule RedactRule) error {
	if name, ok := strings.CutPrefix(rule.Field, AttrPrefix); ok {
		if !validAttrName(name) {
			return errorf(ErrSpec, "field %q: extension attribute names are 1-20 lower-case letters or digits", rule.Field)
		}
	} else if !redactable[rule.Field] {
		if builtins[rule.Field] != nil {
			return errorf(ErrSpec, "cannot redact field %q (redactable: %s, or attrs.NAME)", rule.Field, redactableNames)
		}
		return errorf(ErrSpec, "unknown field %q (want one of %s, or attrs.NAME for an extension attribute)", rule.Field, redactableNames)
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

// Fields returns the canonical names of the fields r may change or remove,
// sorted: built-in attribute names ("subject" for the path) and extension
// attributes as "attrs.NAME", including the fields hidden because they
// reveal a redacted one (see Redactor). A nil Redactor returns nil.
func (r *Redactor) Fields() []string {
	if r == nil {
		return nil
	}
	return slices.Clone(r.hidden)
}

// Hides reports whether r may change or remove field in an event, so that
// a selector or filter reading field on the unredacted event could reveal
// what r hides. field is named as filters name it: a built-in attribute
// ("path" and "subject" are one field), an extension attribute as NAME,
// attrs.NAME, attrs[NAME] or attrs["NAME"]. A nil Redactor hides nothing.
func (r *Redactor) Hides(field string) bool {
	if r == nil {
		return false
	}
	_, found := slices.BinarySearch(r.hidden, canonicalSelectorField(field))
	return found
}

// canonicalSelectorField maps a field as selectors name it to the
// canonical name Fields uses.
func canonicalSelectorField(field string) string {
	if inner, ok := strings.CutPrefix(field, "attrs["); ok {
		if inner, ok := strings.CutSuffix(inner, "]"); ok {
			return AttrPrefix + strings.Trim(inner, `"'`)
		}
	}
	if strings.HasPrefix(field, AttrPrefix) {
		return field
	}
	if f, ok := builtins[field]; ok {
		return f.name
	}
	switch field {
	case "data":
		return field
	}
	return AttrPrefix + field
}

// Reveals reports whether f reads a field that r hides, so that f's
// result on an unredacted event could tell a subscriber something r hides
// from it. It is true when f reads fields it cannot name (expressions over
// attrs, foreign Filter implementations) and r hides any extension
// attribute or its reads are unknown. A nil Redactor reveals nothing.
func (r *Redactor) Reveals(f Filter) bool {
	if r == nil {
		return false
	}
	rs := readsOf(f)
	for name, fl := range builtins {
		if rs.fields&fl.bit != 0 && r.Hides(name) {
			return true
		}
	}
	for _, a := range rs.attrs {
		if r.Hides(AttrPrefix + a) {
			return true
		}
	}
	if rs.unknown {
		for _, h := range r.hidden {
			if strings.HasPrefix(h, AttrPrefix) {
				return true
			}
		}
		// A foreign filter may read anything.
		if _, ok := f.(reader); !ok {
			return len(r.hidden) > 0
		}
	}
	return false
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
			key := strings.TrimPrefix(rule.Field, AttrPrefix)
			v, ok := ev.Attr(key)
			if !ok {
				continue
			}
			c := cp()
			if &c.Attrs[0] == &ev.Attrs[0] {
				c.Attrs = append([]event.Attr(nil), ev.Attrs...)
			}
			if rule.Action == "drop" {
				c.Attrs = deleteAttr(c.Attrs, key)
				continue
			}
			nv, _ := r.redactString(v, rule)
			c.SetAttr(key, nv)
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
