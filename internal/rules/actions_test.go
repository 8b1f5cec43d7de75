package rules

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestParseActions: a rule's actions: list keeps each action's type,
// arguments (scalars and lists) and lines.
func TestParseActions(t *testing.T) {
	set, err := Parse("f.yaml", []byte(`
rules:
  - name: mass-rename
    when: 'type == "fs.rename"'
    count: 50
    within: 10s
    by: pid
    actions:
      - {type: snapshot, paths: '{{range .Events}}{{.Oldpath}} {{end}}'}
      - type: webhook
        url: "https://hooks.example/alert"
        timeout: 2s
        retries: 3
      - type: exec
        argv: [/bin/echo, '{{.Rule}}']
`))
	if err != nil {
		t.Fatal(err)
	}
	got := set.Rules[0].Actions
	want := []ActionSpec{
		{Type: "snapshot", Line: 9, Args: map[string]ActionArg{"paths": {Value: "{{range .Events}}{{.Oldpath}} {{end}}", Line: 9}}},
		{Type: "webhook", Line: 10, Args: map[string]ActionArg{
			"url":     {Value: "https://hooks.example/alert", Line: 11},
			"timeout": {Value: "2s", Line: 12},
			"retries": {Value: "3", Line: 13},
		}},
		{Type: "exec", Line: 14, Args: map[string]ActionArg{"argv": {List: []string{"/bin/echo", "{{.Rule}}"}, IsList: true, Line: 15}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("actions (-want +got):\n%s", diff)
	}
}

// TestParseActionErrors: malformed actions are refused with the file, the
// line and the rule.
func TestParseActionErrors(t *testing.T) {
	const head = "rules:\n  - name: a\n    when: 'true'\n"
	for _, tc := range []struct {
		yaml, want string
	}{
		{head + "    actions: {type: emit}\n", `f.yaml:4: rule "a": actions: want a list`},
		{head + "    actions:\n      - emit\n", `f.yaml:5: rule "a": actions: want a mapping`},
		{head + "    actions:\n      - {url: x}\n", `f.yaml:5: rule "a": action 1: type is required`},
		{head + "    actions:\n      - {type: 'Bad Type'}\n", `f.yaml:5: rule "a": action 1: type "Bad Type"`},
		{head + "    actions:\n      - {type: emit}\n      - type: exec\n        argv: '{{.x'\n", `f.yaml:7: rule "a": action 2: argv:`},
		{head + "    actions:\n      - type: exec\n        argv: [{a: b}]\n", `f.yaml:6: rule "a": action 1: argv: want a string or a list of strings`},
		{head + "    actions:\n      - type: exec\n        env: {a: b}\n", `f.yaml:6: rule "a": action 1: env: want a string or a list of strings`},
		{head + "    actions:\n      - type: exec\n        type: emit\n", `f.yaml:6: rule "a": action 1: type: given twice`},
	} {
		_, err := Parse("f.yaml", []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tc.yaml, err, tc.want)
		}
		if err != nil && !errors.Is(err, ErrRule) {
			t.Errorf("Parse(%q) = %v, want ErrRule", tc.yaml, err)
		}
	}
}

// TestActionsKeepFingerprint: editing a rule's actions does not change its
// fingerprint, so a reload keeps the rule's matching state.
func TestActionsKeepFingerprint(t *testing.T) {
	a := mustParse(t, "rules:\n  - name: a\n    when: 'true'\n    actions:\n      - {type: emit, event_type: x}\n")
	b := mustParse(t, "rules:\n  - name: a\n    when: 'true'\n")
	if a.Rules[0].Fingerprint() != b.Rules[0].Fingerprint() {
		t.Errorf("fingerprints differ: %s, %s", a.Rules[0].Fingerprint(), b.Rules[0].Fingerprint())
	}
}

// TestFingerprintIgnoresPlace: a rule moved within its file (or to another
// file) keeps its fingerprint, as Fingerprint documents.
func TestFingerprintIgnoresPlace(t *testing.T) {
	a, err := Parse("a.yaml", []byte("rules:\n  - name: a\n    when: 'true'\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse("b.yaml", []byte("rules:\n\n\n  - name: a\n    enabled: false\n    when: 'true'\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Rules[0].Fingerprint() != b.Rules[0].Fingerprint() {
		t.Errorf("fingerprints differ: %s, %s", a.Rules[0].Fingerprint(), b.Rules[0].Fingerprint())
	}
}
