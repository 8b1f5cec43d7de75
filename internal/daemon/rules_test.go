package daemon

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/semprop/semprop/internal/config"
)

// TestRulesRun: a daemon with --rules publishes matches as
// semprop.rule.match events, lists its rules at /v1/rules, and refuses a
// reload of a broken file while the running rules stay.
func TestRulesRun(t *testing.T) {
	dir := t.TempDir()
	rf := filepath.Join(dir, "r.yaml")
	if err := os.WriteFile(rf, []byte(`rules:
  - name: three-jobs
    when: 'type == "app.job"'
    count: 3
    within: 1m
`), 0o644); err != nil {
		t.Fatal(err)
	}
	c := defaults(t)
	c.Rules = []string{rf}
	_, url := startT(t, c)
	for i := range 3 {
		body := fmt.Sprintf(`{"specversion":"1.0","id":"%d","source":"/t","type":"app.job"}`, i)
		resp, err := http.Post(url+"/v1/events", "application/cloudevents+json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	var match string
	for time.Now().Before(deadline) && match == "" {
		resp, err := http.Get(url + "/v1/events?after=0&type=semprop.rule.match")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		match = strings.TrimSpace(string(b))
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(match, `"rule":"three-jobs"`) || !strings.Contains(match, `"seqs":[1,2,3]`) {
		t.Fatalf("match event %q, want rule three-jobs over seqs 1,2,3", match)
	}
	var list struct {
		Rules []struct {
			Name     string
			Counters map[string]int64
		}
	}
	getJSON(t, url+"/v1/rules", &list)
	if len(list.Rules) != 1 || list.Rules[0].Name != "three-jobs" || list.Rules[0].Counters["matches"] != 1 {
		t.Errorf("GET /v1/rules = %+v, want three-jobs with 1 match", list.Rules)
	}
	if err := os.WriteFile(rf, []byte("rules:\n  - name: Bad Name\n    when: 'x'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url+"/v1/rules/reload", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("reload of a broken file: %s, want 400", resp.Status)
	}
	getJSON(t, url+"/v1/rules", &list)
	if len(list.Rules) != 1 || list.Rules[0].Name != "three-jobs" {
		t.Errorf("after a refused reload the rules are %+v, want three-jobs still", list.Rules)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// TestStatusCaptures: GET /v1/status has a section per captured tree.
func TestStatusCaptures(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the kernel boundary needs root (fanotify)")
	}
	c := defaults(t)
	c.Watch = config.Trees(t.TempDir())
	d, url := startT(t, c)
	cfg := &d.cfg
	var st struct {
		Captures []struct {
			Tree string
			Mode string
		}
	}
	getJSON(t, url+"/v1/status", &st)
	if len(st.Captures) != 1 || st.Captures[0].Tree != cfg.Watches[0].Root || st.Captures[0].Mode == "" {
		t.Errorf("status captures = %+v, want the watched tree %s with its mode", st.Captures, cfg.Watches[0].Root)
	}
}

// TestEnrichWired: a watched tree's events pass through the enrichment
// layer: ignore rules drop events, content facts are added.
func TestEnrichWired(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the kernel boundary needs root (fanotify)")
	}
	c := defaults(t)
	dir := t.TempDir()
	c.Watch = config.Trees(dir)
	c.Ignore = []string{"*.tmp"}
	c.Enrich.Content = true
	d, url := startT(t, c)
	root := d.cfg.Watches[0].Root
	if err := os.WriteFile(filepath.Join(root, "b.tmp"), []byte("ignored"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "a.txt"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var log string
	for time.Now().Before(deadline) {
		resp, err := http.Get(url + "/v1/events?after=0&type=fs.write")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if log = string(b); strings.Contains(log, "a.txt") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(log, `"hash":"`) || !strings.Contains(log, `"mime":"text/plain"`) {
		t.Errorf("fs.write of a.txt without content facts: %s", log)
	}
	resp, err := http.Get(url + "/v1/events?after=0")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(b), "b.tmp") {
		t.Errorf("an ignored file's events reached the journal: %s", b)
	}
}

// TestRulesEnableOverHTTP: a rule switched off stops matching; an unknown
// rule is 404.
func TestRulesEnableOverHTTP(t *testing.T) {
	rf := filepath.Join(t.TempDir(), "r.yaml")
	if err := os.WriteFile(rf, []byte("rules:\n  - name: one\n    when: 'type == \"app.x\"'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := defaults(t)
	c.Rules = []string{rf}
	_, url := startT(t, c)
	for path, want := range map[string]int{"/v1/rules/one/disable": 200, "/v1/rules/nope/enable": 404} {
		resp, err := http.Post(url+path, "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("POST %s: %s, want %d", path, resp.Status, want)
		}
	}
	var list struct{ Rules []struct{ Enabled bool } }
	getJSON(t, url+"/v1/rules", &list)
	if len(list.Rules) != 1 || list.Rules[0].Enabled {
		t.Errorf("after disable: %+v, want one rule, disabled", list.Rules)
	}
}

// TestActionsRun: a rule's actions run on its match, the outcome is
// published, and the audit trail records it.
func TestActionsRun(t *testing.T) {
	rf := filepath.Join(t.TempDir(), "r.yaml")
	if err := os.WriteFile(rf, []byte(`rules:
  - name: two-jobs
    when: 'type == "app.job"'
    count: 2
    within: 1m
    actions:
      - {type: emit, event_type: app.alert, data: '{"n":2}'}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	c := defaults(t)
	c.Rules = []string{rf}
	_, url := startT(t, c)
	for i := range 2 {
		body := fmt.Sprintf(`{"specversion":"1.0","id":"j%d","source":"/t","type":"app.job"}`, i)
		resp, err := http.Post(url+"/v1/events", "application/cloudevents+json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	var log string
	for time.Now().Before(deadline) {
		resp, err := http.Get(url + "/v1/events?after=0&type=semprop.action.ok&type=app.alert")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if log = string(b); strings.Contains(log, "semprop.action.ok") && strings.Contains(log, "app.alert") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(log, "semprop.action.ok") || !strings.Contains(log, `"type":"app.alert"`) {
		t.Fatalf("no emitted event and outcome after the match: %q", log)
	}
	resp, err := http.Get(url + "/v1/audit")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "two-jobs") {
		t.Errorf("GET /v1/audit: %s %.300s, want the rule's records", resp.Status, b)
	}
}
