package action

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/semprop/semprop/internal/audit"
)

func registerSignal(r *Registry) {
	r.Register("signal", Type{New: newSignal, Args: map[string]ArgKind{"pid": ArgInt, "signal": ArgString}, Required: []string{"pid"}})
}

// signalAction stops or continues a process; its rollback does the
// opposite. It checks the process's start time so that a reused pid is
// never signalled.
type signalAction struct {
	pid int
	sig unix.Signal
}

type signalState struct {
	Start string `json:"start"` // field 22 of /proc/PID/stat
}

func newSignal(c *Call) (Action, error) {
	if !c.Env.Signals {
		return nil, fmt.Errorf("signal: %w (actions.signals)", ErrDisabled)
	}
	pid, err := c.Args.Int("pid", 0)
	if err != nil {
		return nil, err
	}
	a := &signalAction{pid: pid, sig: unix.SIGSTOP}
	switch strings.ToUpper(strings.TrimPrefix(strings.ToUpper(c.Args.Str("signal")), "SIG")) {
	case "", "STOP":
	case "CONT":
		a.sig = unix.SIGCONT
	default:
		return nil, fmt.Errorf("signal: %q: want STOP or CONT: %w", c.Args.Str("signal"), ErrArgs)
	}
	return a, nil
}

// procStart returns the start time of pid, in clock ticks since boot.
func procStart(pid int) (string, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", err
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return "", fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return f[19], nil // field 22; fields after ")" start at 3
}

func (a *signalAction) Validate(context.Context) ([]audit.Check, json.RawMessage, error) {
	var checks []audit.Check
	if a.pid <= 1 || a.pid == os.Getpid() {
		checks = append(checks, audit.Check{Name: "not init or semprop", Detail: strconv.Itoa(a.pid)})
		return checks, nil, fmt.Errorf("%w: pid %d", ErrPrecondition, a.pid)
	}
	start, err := procStart(a.pid)
	if err != nil {
		checks = append(checks, audit.Check{Name: "process exists", Detail: err.Error()})
		return checks, nil, fmt.Errorf("%w: pid %d: %w", ErrPrecondition, a.pid, err)
	}
	checks = append(checks, audit.Check{Name: "process exists", OK: true})
	state, _ := json.Marshal(signalState{Start: start})
	return checks, state, nil
}

func (a *signalAction) send(raw json.RawMessage, sig unix.Signal) error {
	var s signalState
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("signal: bad state: %w", err)
	}
	if start, err := procStart(a.pid); err != nil || start != s.Start {
		return fmt.Errorf("signal: pid %d is gone or was reused", a.pid)
	}
	return unix.Kill(a.pid, sig)
}

func (a *signalAction) Execute(_ context.Context, raw json.RawMessage) (json.RawMessage, error) {
	if err := a.send(raw, a.sig); err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{"pid": a.pid, "signal": unix.SignalName(a.sig)})
}

// Recover: sending the same signal again is harmless.
func (a *signalAction) Recover(context.Context, json.RawMessage) (json.RawMessage, bool, error) {
	return nil, false, nil
}

func (a *signalAction) Rollback(_ context.Context, raw, _ json.RawMessage) (json.RawMessage, error) {
	undo := unix.SIGCONT
	if a.sig == unix.SIGCONT {
		undo = unix.SIGSTOP
	}
	if err := a.send(raw, undo); err != nil {
		return json.RawMessage(`{"undone":false,"why":"the process is gone"}`), nil
	}
	return json.Marshal(map[string]any{"undone": true, "signal": unix.SignalName(undo)})
}
