package daemon

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestMonitorReloadOnSIGHUP: SIGHUP reads the alert rule files again; a
// broken file is refused and the running rules stay.
func TestMonitorReloadOnSIGHUP(t *testing.T) {
	rf := filepath.Join(t.TempDir(), "alerts.yaml")
	write := func(s string) {
		if err := os.WriteFile(rf, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("rules:\n  - alert: First\n    expr: semprop_published_events_total > 1e9\n")
	c := defaults(t)
	c.Monitor.RuleFiles = []string{rf}
	d, _ := startT(t, c)
	has := func(name string) bool {
		for _, r := range d.monitor.Rules() {
			if r.Alert == name {
				return true
			}
		}
		return false
	}
	if !has("First") {
		t.Fatal("the alert rule file was not loaded")
	}
	waitRules := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !has(want); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no rule %s 10s after SIGHUP", want)
			}
		}
	}
	write("rules:\n  - alert: Second\n    expr: semprop_published_events_total > 1e9\n")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitRules("Second")
	if has("First") {
		t.Error("the removed rule is still loaded")
	}
	write("rules: [{alert: Broken, expr: '>'}]")
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	if !has("Second") || has("Broken") {
		t.Errorf("after a broken file: rules %+v; want Second still", d.monitor.Rules())
	}
}
