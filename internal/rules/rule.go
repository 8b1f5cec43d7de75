package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/semprop/semprop/internal/cep"
)

// Errors returned by loading. Every error from Load names the file and the
// line, and the rule when there is one.
var (
	ErrRule       = errors.New("rules: invalid rule")
	ErrField      = errors.New("rules: invalid field (want an event field such as pid, comm, subject, dir(subject) or attrs[\"x\"])")
	ErrYAML       = errors.New("rules: invalid YAML")
	ErrNoSuchRule = errors.New("rules: no such rule")
)

// Severity levels.
const (
	SeverityInfo     = "info"
	SeverityWarning  = "warning"
	SeverityCritical = "critical"
)

// Step is one step of a sequence.
type Step struct {
	As   string `json:"as,omitempty"`
	When string `json:"when"`
}

// Rule is one rule as written in a rule file, validated and compiled.
// A Rule is immutable once loaded and safe for concurrent use.
type Rule struct {
	Name          string        `json:"name"`
	When          string        `json:"when,omitempty"`
	Sequence      []Step        `json:"sequence,omitempty"`
	NotFollowedBy string        `json:"not_followed_by,omitempty"`
	Absent        string        `json:"absent,omitempty"`
	For           time.Duration `json:"for,omitempty"`
	Count         int           `json:"count,omitempty"`
	Within        time.Duration `json:"within,omitempty"`
	By            string        `json:"by,omitempty"`
	Distinct      string        `json:"distinct,omitempty"`
	Cooldown      time.Duration `json:"cooldown,omitempty"`
	MaxRate       int           `json:"max_rate,omitempty"` // matches per minute; 0: the engine's default
	// Settle, when set, shows the rule settled events only: one per
	// burst on a subject (see settle.go).
	Settle   time.Duration `json:"settle,omitempty"`
	Severity string        `json:"severity"`
	Tags     []string      `json:"tags,omitempty"`
	Output   string        `json:"output,omitempty"`
	Enabled  bool          `json:"enabled"`
	// Actions run, in order, for each match (package action).
	Actions []ActionSpec `json:"actions,omitempty"`

	File string `json:"file"` // where the rule was loaded from
	Line int    `json:"line"`

	kind        cep.Kind
	pattern     *cep.Pattern
	tmpl        *template.Template
	fingerprint string
}

// Kind returns the rule's pattern kind.
func (r *Rule) Kind() cep.Kind { return r.kind }

// Fingerprint identifies the rule's definition (everything but enabled
// and where it was loaded from): a reload keeps the state of a rule whose
// fingerprint did not change.
func (r *Rule) Fingerprint() string { return r.fingerprint }

// Set is the rules loaded from one or more files, in load order. A Set
// is not modified once loaded and is safe for concurrent reads.
type Set struct {
	Rules []*Rule
}

// Rule returns the rule called name, or nil.
func (s *Set) Rule(name string) *Rule {
	for _, r := range s.Rules {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// patterns returns the compiled patterns of the enabled rules.
func (s *Set) patterns(maxRate int) []*cep.Pattern {
	var ps []*cep.Pattern
	for _, r := range s.Rules {
		if !r.Enabled {
			continue
		}
		p := *r.pattern
		if p.MaxRate == 0 {
			p.MaxRate = maxRate
		}
		ps = append(ps, &p)
	}
	return ps
}

// Load reads rule files: each path is a file or a directory, whose *.yaml
// and *.yml files are read in name order. Rule names are unique across
// all files.
func Load(paths ...string) (*Set, error) {
	set := &Set{}
	for _, p := range paths {
		files := []string{p}
		if st, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("rules: %w", err)
		} else if st.IsDir() {
			ents, err := os.ReadDir(p)
			if err != nil {
				return nil, fmt.Errorf("rules: %w", err)
			}
			files = files[:0]
			for _, e := range ents {
				if n := e.Name(); !e.IsDir() && (strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) {
					files = append(files, filepath.Join(p, n))
				}
			}
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("rules: %w", err)
			}
			s, err := Parse(f, data)
			if err != nil {
				return nil, err
			}
			if err := set.add(s.Rules...); err != nil {
				return nil, err
			}
		}
	}
	return set, nil
}

func (s *Set) add(rs ...*Rule) error {
	for _, r := range rs {
		if old := s.Rule(r.Name); old != nil {
			return fmt.Errorf("%s:%d: rule %q: also defined at %s:%d: %w", r.File, r.Line, r.Name, old.File, old.Line, ErrRule)
		}
		s.Rules = append(s.Rules, r)
	}
	return nil
}

// Parse parses one rule file's contents; name is used in errors.
func Parse(name string, data []byte) (*Set, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", name, err, ErrYAML)
	}
	set := &Set{}
	if len(doc.Content) == 0 {
		return set, nil // an empty file
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d: want a mapping with a rules: list: %w", name, root.Line, ErrRule)
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Value != "rules" {
			return nil, fmt.Errorf("%s:%d: unknown key %q (want rules): %w", name, k.Line, k.Value, ErrRule)
		}
		if v.Kind != yaml.SequenceNode {
			if v.Tag == "!!null" {
				continue
			}
			return nil, fmt.Errorf("%s:%d: rules: want a list: %w", name, v.Line, ErrRule)
		}
		for _, item := range v.Content {
			r, err := parseRule(name, item)
			if err != nil {
				return nil, err
			}
			if err := set.add(r); err != nil {
				return nil, err
			}
		}
	}
	return set, nil
}

var (
	ruleName = regexp.MustCompile(`^[a-z0-9_-]+$`)
	bindName = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
)

// reservedNames cannot be bound with as: they are event fields, or first.
var reservedNames = func() map[string]bool {
	m := map[string]bool{"first": true, "attrs": true, "path": true}
	for n := range strFields {
		m[n] = true
	}
	for n := range numFields {
		m[n] = true
	}
	return m
}()

// ruleError builds errors that name the file, the line and the rule.
type ruleError struct {
	file string
	name string
}

func (e ruleError) at(line int, format string, args ...any) error {
	who := ""
	if e.name != "" {
		who = fmt.Sprintf(" rule %q:", e.name)
	}
	return fmt.Errorf("%s:%d:%s %s: %w", e.file, line, who, fmt.Sprintf(format, args...), ErrRule)
}

func parseRule(file string, n *yaml.Node) (*Rule, error) {
	re := ruleError{file: file}
	if n.Kind != yaml.MappingNode {
		return nil, re.at(n.Line, "want a mapping (name:, when:, ...)")
	}
	r := &Rule{File: file, Line: n.Line, Enabled: true, Severity: SeverityInfo}
	lines := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Value == "name" {
			r.Name = n.Content[i+1].Value
			re.name = r.Name
		}
	}
	str := func(v *yaml.Node, key string) (string, error) {
		if v.Kind != yaml.ScalarNode {
			return "", re.at(v.Line, "%s: want a string", key)
		}
		return v.Value, nil
	}
	dur := func(v *yaml.Node, key string) (time.Duration, error) {
		s, err := str(v, key)
		if err != nil {
			return 0, err
		}
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return 0, re.at(v.Line, "%s: %q: want a positive duration such as 10s or 5m", key, s)
		}
		return d, nil
	}
	num := func(v *yaml.Node, key string) (int, error) {
		n, err := strconv.Atoi(v.Value)
		if v.Kind != yaml.ScalarNode || err != nil || n < 1 {
			return 0, re.at(v.Line, "%s: %q: want a positive integer", key, v.Value)
		}
		return n, nil
	}
	var err error
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if _, dup := lines[k.Value]; dup {
			return nil, re.at(k.Line, "%s: given twice", k.Value)
		}
		lines[k.Value] = k.Line
		switch k.Value {
		case "name":
		case "when":
			r.When, err = str(v, k.Value)
		case "not_followed_by":
			r.NotFollowedBy, err = str(v, k.Value)
		case "absent":
			r.Absent, err = str(v, k.Value)
		case "by":
			r.By, err = str(v, k.Value)
		case "distinct":
			r.Distinct, err = str(v, k.Value)
		case "output":
			r.Output, err = str(v, k.Value)
		case "severity":
			r.Severity, err = str(v, k.Value)
		case "within":
			r.Within, err = dur(v, k.Value)
		case "for":
			r.For, err = dur(v, k.Value)
		case "cooldown":
			r.Cooldown, err = dur(v, k.Value)
		case "settle":
			if r.Settle, err = dur(v, k.Value); err == nil && (r.Settle < time.Millisecond || r.Settle > maxSettle) {
				err = re.at(v.Line, "settle: %q: want a duration from 1ms to 1m, such as 200ms", v.Value)
			}
		case "count":
			r.Count, err = num(v, k.Value)
		case "max_rate":
			r.MaxRate, err = num(v, k.Value)
		case "enabled":
			if v.Kind != yaml.ScalarNode || (v.Value != "true" && v.Value != "false") {
				err = re.at(v.Line, "enabled: want true or false")
			}
			r.Enabled = v.Value == "true"
		case "actions":
			r.Actions, err = parseActions(re, v)
		case "tags":
			if v.Kind != yaml.SequenceNode {
				err = re.at(v.Line, "tags: want a list of strings")
				break
			}
			for _, t := range v.Content {
				s, e := str(t, "tags")
				if e != nil {
					err = e
					break
				}
				r.Tags = append(r.Tags, s)
			}
		case "sequence":
			if v.Kind != yaml.SequenceNode {
				err = re.at(v.Line, "sequence: want a list of steps")
				break
			}
			for _, st := range v.Content {
				if st.Kind != yaml.MappingNode {
					err = re.at(st.Line, "sequence: want steps like {as: w, when: '...'}")
					break
				}
				var s Step
				for j := 0; j+1 < len(st.Content); j += 2 {
					sk, sv := st.Content[j], st.Content[j+1]
					switch sk.Value {
					case "as":
						s.As, err = str(sv, "as")
					case "when":
						s.When, err = str(sv, "when")
					default:
						err = re.at(sk.Line, "sequence step: unknown key %q (want as, when)", sk.Value)
					}
					if err != nil {
						break
					}
				}
				if err != nil {
					break
				}
				if s.When == "" {
					err = re.at(st.Line, "sequence step: when is required")
					break
				}
				r.Sequence = append(r.Sequence, s)
				lines[fmt.Sprintf("sequence.%d", len(r.Sequence)-1)] = st.Line
			}
		default:
			err = re.at(k.Line, "unknown key %q", k.Value)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := r.compile(re, lines); err != nil {
		return nil, err
	}
	return r, nil
}

// compile checks the rule's shape and compiles its conditions.
func (r *Rule) compile(re ruleError, lines map[string]int) error {
	line := func(key string) int {
		if l, ok := lines[key]; ok {
			return l
		}
		return r.Line
	}
	if r.Name == "" {
		return re.at(r.Line, "name is required")
	}
	if !ruleName.MatchString(r.Name) {
		return re.at(line("name"), "name: want [a-z0-9_-]+")
	}
	switch r.Severity {
	case SeverityInfo, SeverityWarning, SeverityCritical:
	default:
		return re.at(line("severity"), "severity %q: want info, warning or critical", r.Severity)
	}
	// The shape: which keys go together.
	has := func(keys ...string) string {
		for _, k := range keys {
			if _, ok := lines[k]; ok {
				return k
			}
		}
		return ""
	}
	only := func(kind string, allowed ...string) error {
		for k := range lines {
			if strings.HasPrefix(k, "sequence.") {
				continue
			}
			switch k {
			case "name", "severity", "tags", "output", "cooldown", "enabled", "max_rate", "by", "actions", "settle":
				continue
			}
			if !slices.Contains(allowed, k) {
				return re.at(line(k), "%s does not go with %s", k, kind)
			}
		}
		return nil
	}
	p := &cep.Pattern{Name: r.Name, Within: r.Within, Cooldown: r.Cooldown, MaxRate: r.MaxRate}
	var err error
	switch {
	case has("sequence") != "":
		r.kind = cep.KindSequence
		if err := only("sequence", "sequence", "within"); err != nil {
			return err
		}
		if len(r.Sequence) < 2 {
			return re.at(line("sequence"), "sequence: want two or more steps")
		}
		bound := map[string]int{}
		for i, s := range r.Sequence {
			l := line(fmt.Sprintf("sequence.%d", i))
			if i > 0 {
				bound["first"] = 0
			}
			c, err := compileCond(s.When, bound)
			if err != nil {
				return re.at(l, "sequence step %d: %v", i+1, err)
			}
			p.Steps = append(p.Steps, c)
			if s.As != "" {
				if !bindName.MatchString(s.As) || reservedNames[s.As] {
					return re.at(l, "sequence step %d: as %q: want a name such as w (not a field name or first)", i+1, s.As)
				}
				if _, dup := bound[s.As]; dup {
					return re.at(l, "sequence step %d: as %q: bound twice", i+1, s.As)
				}
				bound[s.As] = i
			}
		}
	case has("absent") != "":
		r.kind = cep.KindAbsent
		if err := only("absent", "absent", "for"); err != nil {
			return err
		}
		if r.For == 0 {
			return re.at(line("absent"), "absent needs for: (how long without such an event)")
		}
		c, err := compileCond(r.Absent, nil)
		if err != nil {
			return re.at(line("absent"), "absent: %v", err)
		}
		p.Steps, p.Within = []cep.Cond{c}, r.For
	case has("not_followed_by") != "":
		r.kind = cep.KindNotFollowedBy
		if err := only("not_followed_by", "when", "not_followed_by", "within"); err != nil {
			return err
		}
		if r.When == "" || r.Within == 0 {
			return re.at(line("not_followed_by"), "not_followed_by needs when: and within:")
		}
		c, err := compileCond(r.When, nil)
		if err != nil {
			return re.at(line("when"), "when: %v", err)
		}
		not, err := compileCond(r.NotFollowedBy, map[string]int{"first": 0})
		if err != nil {
			return re.at(line("not_followed_by"), "not_followed_by: %v", err)
		}
		p.Steps, p.Not = []cep.Cond{c}, not
	default:
		if r.When == "" {
			return re.at(r.Line, "when:, sequence: or absent: is required")
		}
		c, err := compileCond(r.When, nil)
		if err != nil {
			return re.at(line("when"), "when: %v", err)
		}
		p.Steps = []cep.Cond{c}
		if has("count") != "" {
			r.kind = cep.KindCount
			if err := only("count", "when", "count", "within", "distinct"); err != nil {
				return err
			}
			p.Count = r.Count
			if r.Distinct != "" {
				if p.Distinct, err = compileField(r.Distinct); err != nil {
					return re.at(line("distinct"), "distinct: %v", err)
				}
			}
		} else {
			r.kind = cep.KindSingle
			if err := only("a single-event rule (add count: to count events in a window)", "when"); err != nil {
				return err
			}
		}
	}
	p.Kind = r.kind
	if r.By != "" {
		if p.By, err = compileField(r.By); err != nil {
			return re.at(line("by"), "by: %v", err)
		}
	}
	p.Types = patternTypes(p)
	for _, c := range append(slices.Clone(p.Steps), p.Not) {
		if c != nil {
			c.(*cond).settle = r.Settle
		}
	}
	if len(p.Types) == 1 {
		for _, c := range append(slices.Clone(p.Steps), p.Not) {
			if c == nil {
				continue
			}
			if err := c.(*cond).assumeType(p.Types[0]); err != nil {
				return re.at(r.Line, "%v", err)
			}
		}
	}
	if r.Output != "" {
		if r.tmpl, err = template.New(r.Name).Option("missingkey=zero").Parse(r.Output); err != nil {
			return re.at(line("output"), "output: %v", err)
		}
	}
	def, _ := json.Marshal(struct {
		*Rule
		// Shadow by JSON name (a json:"-" field hides nothing).
		Enabled *struct{} `json:"enabled,omitempty"`
		File    *struct{} `json:"file,omitempty"`
		Line    *struct{} `json:"line,omitempty"`
		Actions *struct{} `json:"actions,omitempty"`
	}{Rule: r})
	sum := sha256.Sum256(def)
	r.fingerprint = hex.EncodeToString(sum[:8])
	p.Fingerprint = r.fingerprint
	r.pattern = p
	return nil
}

// patternTypes is the union of the types the pattern's conditions accept;
// nil if any of them may accept any type.
func patternTypes(p *cep.Pattern) []string {
	conds := slices.Clone(p.Steps)
	if p.Not != nil {
		conds = append(conds, p.Not)
	}
	types := []string{}
	for _, c := range conds {
		cc := c.(*cond)
		if cc.types == nil {
			return nil
		}
		types = append(types, cc.types...)
	}
	slices.Sort(types)
	return slices.Compact(types)
}
