package cli

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/event"
)

// TestTailFlags: several type patterns, --since SEQ|DURATION, --count,
// --format text, and contradictory flags refused.
func TestTailFlags(t *testing.T) {
	a := newAPIServer(t)
	a.publish(t, "job.a", "other", "job.b", "com.example.Object.Created")
	code, out, errOut := run(t, a.url, "tail", "job.a", "com.example.>", "--since", "0", "--count", "2")
	if code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(out, `"type":"job.a"`) || !strings.Contains(out, `"com.example.Object.Created"`) {
		t.Errorf("tail job.a com.example.> = %d %q %q, want the two events", code, out, errOut)
	}
	code, out, _ = run(t, a.url, "tail", "--since", "1h", "--count", "1")
	if code != 0 || !strings.Contains(out, `"type":"job.a"`) {
		t.Errorf("tail --since 1h --count 1 = %d %q, want the first event", code, out)
	}
	code, out, _ = run(t, a.url, "tail", "--since", "2", "--count", "1", "--format", "text")
	fields := strings.Fields(out)
	if code != 0 || len(fields) != 6 || fields[2] != "job.b" || fields[3] != "/data/2" || fields[5] != "-" {
		t.Errorf("tail --format text = %d %q, want date time job.b /data/2 - -", code, out)
	}
	for _, args := range [][]string{
		{"tail", "--since", "5", "--from", "3"},
		{"tail", "--group", "g", "--since", "10m"},
		{"tail", "--format", "yaml"},
		{"tail", "--weight", "2"},
		{"tail", "a", "b", "--group", "g"},
	} {
		code, _, errOut := run(t, a.url, args...)
		if code == 0 || errOut == "" {
			t.Errorf("%v = %d %q, want it refused with a message", args, code, errOut)
		}
	}
}

// TestTailGroupAndRoutes: tails join a group; routes add sets its
// strategy with selector flags; routes list shows it with its members;
// named streams are targets of a route with --targets.
func TestTailGroupAndRoutes(t *testing.T) {
	a := newAPIServer(t)
	code, _, errOut := run(t, a.url, "routes", "add", "workers", "--type", "job.*", "--strategy", "key-hash", "--deny", "/secret/**")
	if code != 0 {
		t.Fatalf("routes add workers = %d %s", code, errOut)
	}
	var wg sync.WaitGroup
	outs := make([]string, 2)
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, outs[i], _ = run(t, a.url, "tail", "--group", "workers", "--name", []string{"w1", "w2"}[i], "--count", "1")
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		_, out, _ := run(t, a.url, "routes", "list")
		if strings.Contains(squash(out), "workers group job.* where") && (strings.Contains(out, "w1,w2") || strings.Contains(out, "w2,w1")) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Two subjects that key-hash to different members: publish until
	// both tails have one.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for i := 0; ; i++ {
		select {
		case <-done:
		case <-ctx.Done():
			t.Fatal("the two group members did not both get an event")
		default:
			ev := &event.Event{Type: "job.run", Subject: "/f/" + string(rune('a'+i%26))}
			if _, err := a.m.Publish(ctx, ev); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond)
			continue
		}
		break
	}
	if outs[0] == outs[1] || !strings.Contains(outs[0], "job.run") || !strings.Contains(outs[1], "job.run") {
		t.Errorf("members printed %q and %q, want one distinct event each", outs[0], outs[1])
	}

	// Named streams are targets of an explicit route.
	c := client.New(a.url, "")
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	for _, n := range []string{"n1", "n2"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.StreamGroup(sctx, client.Selector{}, client.Member{Name: n}, func(*event.Event) error { return nil })
		}()
	}
	for ctx.Err() == nil {
		code, _, errOut = run(t, a.url, "routes", "add", "r1", "--targets", "n1,n2", "--type", "app.>")
		if code == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code != 0 {
		t.Errorf("routes add r1 --targets n1,n2 = %d %s", code, errOut)
	}
	scancel()
	wg.Wait()
}

// TestTailUnreachable: tail says on stderr that it retries, then gives up
// with the dial error.
func TestTailUnreachable(t *testing.T) {
	code, _, errOut := run(t, "http://127.0.0.1:1", "tail", "--retries", "1")
	if code == 0 || !strings.Contains(errOut, "retrying (1 of 1)") || !strings.Contains(errOut, "connection refused") {
		t.Errorf("tail against a closed port = %d %q, want a retry message and the dial error", code, errOut)
	}
}
