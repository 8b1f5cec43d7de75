package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/semprop/semprop/internal/propagate"
)

func TestStatusCommand(t *testing.T) {
	a := newAPIServer(t)
	sub, err := a.m.Subscribe(propagate.SubscribeOptions{Name: "w1", Queue: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Close)
	a.api.AddStatus("captures", func() any {
		return []map[string]any{{"root": "/data", "events": 3, "overflows": 1}}
	})
	a.publish(t, "job.a", "job.b", "job.c")
	if code, _, errOut := run(t, a.url, "consumers", "add", "jobs"); code != 0 {
		t.Fatal(errOut)
	}
	code, out, errOut := run(t, a.url, "status")
	if code != 0 {
		t.Fatalf("status = %d: %s", code, errOut)
	}
	out = squash(out)
	for _, want := range []string{
		"Server", "Version:", "Journal", "Last seq: 3 (durable 3)", "in 1 segments", "Ingest", "Published: 3", "Delivery",
		"Live subscriptions (1)", "1 w1 drop-newest 2/2 3 0 1", "Consumers (1)", "jobs - true 0 3 0 0 0", "Cluster", "not in a cluster",
		"Captures", "EVENTS OVERFLOWS ROOT", "3 1 /data",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	code, out, errOut = run(t, a.url, "status", "--json")
	if code != 0 {
		t.Fatalf("status --json = %d: %s", code, errOut)
	}
	var st map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json = %q: %v", out, err)
	}
	for _, k := range []string{"version", "journal", "ingest", "delivery", "subscriptions", "consumers", "cluster", "captures"} {
		if _, ok := st[k]; !ok {
			t.Errorf("status --json lacks %q: %s", k, out)
		}
	}
	if string(st["cluster"]) != "null" {
		t.Errorf("status --json cluster = %s, want null", st["cluster"])
	}
	// Against nothing: the dial error.
	if code, _, errOut := run(t, "http://127.0.0.1:1", "status"); code != 1 || !strings.Contains(errOut, "connect") {
		t.Errorf("status against no server = %d %q, want exit 1 and the dial error", code, errOut)
	}
}
