package action

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func build(t *testing.T, env *Env, typ string, args Args) Action {
	t.Helper()
	if env.HTTPClient == nil {
		c := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
		t.Cleanup(c.CloseIdleConnections)
		env.HTTPClient = c
	}
	ty, ok := NewRegistry().Lookup(typ)
	if !ok {
		t.Fatalf("no type %s", typ)
	}
	act, err := ty.New(&Call{Env: env, Args: args, Key: "rule/01HMATCH/1", Rule: "rule",
		Match: &MatchView{ID: "01HMATCH", Key: "k", Seqs: []uint64{4, 5}, Message: "m"}})
	if err != nil {
		t.Fatal(err)
	}
	return act
}

// TestWebhook: binary-mode CloudEvents headers, the idempotency key as
// ce-id, an HMAC signature over the id and the body, and retries with
// backoff while the target is down.
func TestWebhook(t *testing.T) {
	var (
		mu    sync.Mutex
		times []time.Time
		req   *http.Request
		body  []byte
	)
	up := time.Now().Add(300 * time.Millisecond) // down for a while
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		times = append(times, time.Now())
		if time.Now().Before(up) {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		req, body = r, mustRead(r.Body)
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	env := &Env{Source: "semprop://h", Getenv: func(k string) string { return map[string]string{"HOOK_SECRET": "s3"}[k] }}
	act := build(t, env, "webhook", Args{"url": srv.URL, "retries": "6", "backoff": "20ms", "timeout": "1s", "secret_env": "HOOK_SECRET"})
	res, err := act.Execute(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(times) < 3 {
		t.Fatalf("%d attempts, want retries while down", len(times))
	}
	// The backoff doubles: 20ms, 40ms, 80ms, ... (plus the time of each
	// request): the last gap is at least twice the first.
	if first, last := times[1].Sub(times[0]), times[len(times)-1].Sub(times[len(times)-2]); last < 2*first {
		t.Errorf("first gap %v, last %v: want a growing backoff", first, last)
	}
	for k, want := range map[string]string{"ce-specversion": "1.0", "ce-id": "rule/01HMATCH/1", "ce-source": "semprop://h",
		"ce-type": WebhookType, "ce-subject": "k", "ce-rule": "rule", "Content-Type": "application/json"} {
		if got := req.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if got, want := req.Header.Get(SignatureHeader), Sign("s3", "rule/01HMATCH/1", body); got != want {
		t.Errorf("signature = %q, want %q", got, want)
	}
	var d map[string]any
	if json.Unmarshal(body, &d); d["match"] != "01HMATCH" {
		t.Errorf("body = %s", body)
	}
	var r struct{ Attempts int }
	json.Unmarshal(res, &r)
	if r.Attempts != len(times) {
		t.Errorf("result attempts = %d, server saw %d", r.Attempts, len(times))
	}
}

func mustRead(r io.Reader) []byte { b, _ := io.ReadAll(r); return b }

// TestWebhookPermanent: a 4xx is not retried.
func TestWebhookPermanent(t *testing.T) {
	var n int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { n++; w.WriteHeader(http.StatusForbidden) }))
	t.Cleanup(srv.Close)
	act := build(t, &Env{}, "webhook", Args{"url": srv.URL, "retries": "5", "backoff": "1ms"})
	if _, err := act.Execute(context.Background(), nil); err == nil || n != 1 {
		t.Errorf("Execute = %v after %d attempts, want an error after 1", err, n)
	}
}

// TestExecTimeout: a program that outlives its timeout is killed (its
// whole process group) and the action fails with the output so far.
func TestExecTimeout(t *testing.T) {
	act := build(t, &Env{}, "exec", Args{"argv": []string{"/bin/sh", "-c", "echo started; sleep 30 & sleep 30"}, "timeout": "200ms"})
	start := time.Now()
	res, err := act.Execute(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("Execute = %v, want a timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Execute took %v, want about the timeout", d)
	}
	var r execResult
	json.Unmarshal(res, &r)
	if !r.TimedOut || r.Output != "started\n" {
		t.Errorf("result = %+v", r)
	}
}

// TestExecEnv: only allowed variables and SEMPROP_* reach the program.
func TestExecEnv(t *testing.T) {
	env := &Env{Getenv: func(k string) string { return map[string]string{"OK_VAR": "yes", "SECRET": "no"}[k] }}
	act := build(t, env, "exec", Args{"argv": []string{"/usr/bin/env"}, "env": []string{"OK_VAR"}})
	res, err := act.Execute(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var r execResult
	json.Unmarshal(res, &r)
	got := strings.Fields(r.Output)
	want := []string{"OK_VAR=yes", "SEMPROP_RULE=rule", "SEMPROP_IDEMPOTENCY_KEY=rule/01HMATCH/1", "SEMPROP_MATCH=01HMATCH", "SEMPROP_KEY=k", "SEMPROP_SEQS=4,5"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("environment = %v, want %v", got, want)
	}
}

// TestSignalDisabled: the signal action is refused unless enabled.
func TestSignalDisabled(t *testing.T) {
	ty, _ := NewRegistry().Lookup("signal")
	if _, err := ty.New(&Call{Env: &Env{}, Args: Args{"pid": "1234"}}); err == nil {
		t.Fatal("signal built with signals disabled")
	}
}

func procState(t *testing.T, pid int) string {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])[0]
}

// TestSignal: STOP stops the process, the rollback continues it; a pid
// whose process changed is never signalled.
func TestSignal(t *testing.T) {
	cmd := exec.Command("/bin/sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pid := cmd.Process.Pid
	act := build(t, &Env{Signals: true}, "signal", Args{"pid": strconv.Itoa(pid)})
	ctx := context.Background()
	_, state, err := act.Validate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := act.Execute(ctx, state)
	if err != nil {
		t.Fatal(err)
	}
	waitState := func(want string) {
		t.Helper()
		for range 200 {
			if procState(t, pid) == want {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("process state %s, want %s", procState(t, pid), want)
	}
	waitState("T")
	if _, err := act.Rollback(ctx, state, res); err != nil {
		t.Fatal(err)
	}
	waitState("S")
	if _, err := act.Execute(ctx, json.RawMessage(`{"start":"1"}`)); err == nil {
		t.Error("Execute with another start time succeeded, want refused (pid reused)")
	}
	if procState(t, pid) != "S" {
		t.Error("a process with another start time was signalled")
	}
	for _, pid := range []string{"1", strconv.Itoa(os.Getpid())} {
		if _, _, err := build(t, &Env{Signals: true}, "signal", Args{"pid": pid}).Validate(ctx); err == nil {
			t.Errorf("Validate(pid %s) = nil, want refused", pid)
		}
	}
}
