package action

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/semprop/semprop/internal/audit"
)

// maxOutput bounds the output of a program kept in the audit record.
const maxOutput = 16 << 10

// execAction runs a program (argv, no shell) with a timeout and an
// environment made only of the names allowed and SEMPROP_* variables
// describing the match.
type execAction struct {
	c        *Call
	argv     []string
	undo     []string
	timeout  time.Duration
	allowEnv []string
}

func newExec(c *Call) (Action, error) {
	a := &execAction{c: c, argv: c.Args.List("argv"), undo: c.Args.List("rollback"), allowEnv: c.Args.List("env")}
	if len(a.argv) == 0 || !filepath.IsAbs(a.argv[0]) {
		return nil, fmt.Errorf("exec: argv: want a list whose first element is an absolute path: %w", ErrArgs)
	}
	if len(a.undo) > 0 && !filepath.IsAbs(a.undo[0]) {
		return nil, fmt.Errorf("exec: rollback: want a list whose first element is an absolute path: %w", ErrArgs)
	}
	var err error
	if a.timeout, err = c.Args.Duration("timeout", 10*time.Second); err != nil {
		return nil, err
	}
	return a, nil
}

func executable(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s: not an executable file", path)
	}
	return nil
}

func (a *execAction) Validate(context.Context) ([]audit.Check, json.RawMessage, error) {
	var checks []audit.Check
	for _, p := range [][]string{a.argv, a.undo} {
		if len(p) == 0 {
			continue
		}
		if err := executable(p[0]); err != nil {
			checks = append(checks, audit.Check{Name: "executable: " + p[0], Detail: err.Error()})
			return checks, nil, fmt.Errorf("%w: %w", ErrPrecondition, err)
		}
		checks = append(checks, audit.Check{Name: "executable: " + p[0], OK: true})
	}
	return checks, nil, nil
}

func (a *execAction) env() []string {
	var env []string
	for _, k := range a.allowEnv {
		if v := a.c.Env.getenv(k); v != "" && !strings.HasPrefix(k, "SEMPROP_") {
			env = append(env, k+"="+v)
		}
	}
	env = append(env, "SEMPROP_RULE="+a.c.Rule, "SEMPROP_IDEMPOTENCY_KEY="+a.c.Key)
	if m := a.c.Match; m != nil {
		seqs := make([]string, len(m.Seqs))
		for i, s := range m.Seqs {
			seqs[i] = fmt.Sprint(s)
		}
		env = append(env, "SEMPROP_MATCH="+m.ID, "SEMPROP_KEY="+m.Key, "SEMPROP_SEQS="+strings.Join(seqs, ","))
	}
	return env
}

// capped keeps the first maxOutput bytes written to it.
type capped struct {
	bytes.Buffer
	dropped int
}

func (c *capped) Write(p []byte) (int, error) {
	room := maxOutput - c.Len()
	if room < len(p) {
		c.dropped += len(p) - max(room, 0)
		if room > 0 {
			c.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return c.Buffer.Write(p)
}

type execResult struct {
	Argv     []string `json:"argv"`
	Exit     int      `json:"exit"`
	Output   string   `json:"output,omitempty"`
	Dropped  int      `json:"output_dropped,omitempty"`
	TimedOut bool     `json:"timed_out,omitempty"`
}

func (a *execAction) run(ctx context.Context, argv []string) (execResult, error) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = a.env()
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) } // the whole group
	cmd.WaitDelay = time.Second
	var out capped
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	res := execResult{Argv: argv, Exit: cmd.ProcessState.ExitCode(), Output: out.String(), Dropped: out.dropped}
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		res.TimedOut = true
		return res, fmt.Errorf("exec %s: timed out after %v", argv[0], a.timeout)
	}
	if err != nil {
		return res, fmt.Errorf("exec %s: %w", argv[0], err)
	}
	return res, nil
}

// Execute runs the program; a non-zero exit or a timeout is a failure,
// and its result (with the output) is kept in the error's record.
func (a *execAction) Execute(ctx context.Context, _ json.RawMessage) (json.RawMessage, error) {
	res, err := a.run(ctx, a.argv)
	raw, _ := json.Marshal(res)
	if err != nil {
		return raw, err
	}
	return raw, nil
}

// RollbackOnce: a rollback program may not be idempotent.
func (a *execAction) RollbackOnce() bool { return len(a.undo) > 0 }

// Rollback runs the rollback program if there is one.
func (a *execAction) Rollback(ctx context.Context, _, _ json.RawMessage) (json.RawMessage, error) {
	if len(a.undo) == 0 {
		return json.RawMessage(`{"undone":false,"why":"no rollback program"}`), nil
	}
	res, err := a.run(ctx, a.undo)
	raw, _ := json.Marshal(res)
	return raw, err
}
