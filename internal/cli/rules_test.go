package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRulesLintAndTest(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	events := filepath.Join(dir, "log.ndjson")
	os.WriteFile(good, []byte("rules:\n  - name: two\n    when: 'type == \"app.x\"'\n    count: 2\n    within: 10s\n"), 0o644)
	os.WriteFile(bad, []byte("rules:\n  - name: bad\n    when: 'type =='\n"), 0o644)
	var log strings.Builder
	for i := range 3 {
		log.WriteString(`{"specversion":"1.0","id":"` + string(rune('a'+i)) + `","source":"/t","type":"app.x","seq":` + string(rune('1'+i)) + `,"time":"2026-12-01T10:00:0` + string(rune('0'+i)) + `Z"}` + "\n")
	}
	os.WriteFile(events, []byte(log.String()), 0o644)
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := Main(args, nil, &out, &errb)
		return code, out.String() + errb.String()
	}
	if code, out := run("rules", "lint", good); code != 0 || !strings.Contains(out, "two") {
		t.Errorf("lint good: exit %d:\n%s", code, out)
	}
	if code, out := run("rules", "lint", bad); code == 0 || !strings.Contains(out, "bad.yaml:3") {
		t.Errorf("lint bad: exit %d, want non-zero naming bad.yaml:3:\n%s", code, out)
	}
	code, out := run("rules", "test", good, "--events", events)
	if code != 0 || strings.Count(out, `"rule":"two"`) != 1 || !strings.Contains(out, `"seqs":[1,2]`) {
		t.Errorf("rules test: exit %d, want one match over seqs 1,2:\n%s", code, out)
	}
	if code, _ := run("rules", "test", good); code == 0 {
		t.Error("rules test without --events succeeded")
	}
}
