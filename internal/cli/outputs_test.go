package cli

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/output"
)

func TestOutputsCommand(t *testing.T) {
	s := newAPIServer(t)
	dir := t.TempDir()
	o, err := output.New(output.Options{Manager: s.m, Dir: filepath.Join(dir, "outputs"), Logger: slog.New(slog.DiscardHandler),
		Outputs: []output.Config{{Name: "archive", Type: output.TypeFile, File: &output.FileConfig{Path: filepath.Join(dir, "a.ndjson")}}}})
	if err != nil {
		t.Fatal(err)
	}
	o.Register(s.api)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for range 3 {
		if _, err := s.m.Publish(context.Background(), &event.Event{Type: "fs.write", Subject: "/a"}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for o.Infos()[0].Sent < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	out, err := runCmd(t, newOutputsCmd(), "--server", s.url)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "NAME") || !strings.Contains(out, "archive") || !strings.Contains(out, "file") {
		t.Errorf("outputs table:\n%s", out)
	}
	out, err = runCmd(t, newOutputsCmd(), "--server", s.url, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var outs []struct {
		Name   string `json:"name"`
		Sent   uint64 `json:"sent"`
		Cursor uint64 `json:"cursor"`
	}
	if err := json.Unmarshal([]byte(out), &outs); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(outs) != 1 || outs[0].Name != "archive" || outs[0].Sent != 3 || outs[0].Cursor != 3 {
		t.Errorf("outputs --json = %+v, want archive with 3 sent, cursor 3", outs)
	}
}
