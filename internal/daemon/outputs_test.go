package daemon

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/semprop/semprop/internal/output"
)

// TestOutputsAndIdempotentIngest: a daemon with a file output forwards
// what is published, shows the output in /v1/outputs and /v1/status, and
// answers a retried publish (same source and id) with the first seq
// without storing it again.
func TestOutputsAndIdempotentIngest(t *testing.T) {
	file := filepath.Join(t.TempDir(), "events.ndjson")
	c := defaults(t)
	c.Outputs = []output.Config{{Name: "lake", Type: "file", Types: []string{"app.>"}, File: &output.FileConfig{Path: file}}}
	_, url := startT(t, c)
	post := func(body string) string {
		resp, err := http.Post(url+"/v1/events", "application/cloudevents-batch+json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("publish: %d %s", resp.StatusCode, b)
		}
		return strings.TrimSpace(string(b))
	}
	var batch []string
	for i := range 5 {
		batch = append(batch, fmt.Sprintf(`{"specversion":"1.0","id":"job-%d","source":"/t","type":"app.job"}`, i))
	}
	body := "[" + strings.Join(batch, ",") + "]"
	first := post(body)
	if again := post(body); again != first {
		t.Fatalf("retried batch answered %s, first %s", again, first)
	}
	deadline := time.Now().Add(10 * time.Second)
	var got []byte
	for time.Now().Before(deadline) {
		got, _ = os.ReadFile(file)
		if bytes.Count(got, []byte("\n")) >= 5 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := bytes.Count(got, []byte("\n")); n != 5 || !bytes.Contains(got, []byte(`"id":"job-4"`)) {
		t.Fatalf("file output holds %d lines, want the 5 events once:\n%s", n, got)
	}
	var outs struct {
		Outputs []struct {
			Name string `json:"name"`
		} `json:"outputs"`
	}
	getJSON(t, url+"/v1/outputs", &outs)
	if len(outs.Outputs) != 1 || outs.Outputs[0].Name != "lake" {
		t.Errorf("/v1/outputs = %+v", outs)
	}
	var st map[string]any
	getJSON(t, url+"/v1/status", &st)
	if _, ok := st["outputs"]; !ok {
		t.Errorf("/v1/status has no outputs section: %v", st)
	}
}
