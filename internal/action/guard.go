package action

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/semprop/semprop/internal/audit"
	"github.com/semprop/semprop/internal/capture/procinfo"
)

// Guard is the guard list of the FUSE mounts (*guard.Guard): a listed
// process's mutating operations through a mount are refused. The
// quarantine-process action lists processes on it; its rollback releases
// them. Implementations are safe for concurrent use.
type Guard interface {
	// Quarantine lists process pid until until, and with byUID every
	// process of user uid too.
	Quarantine(pid int32, uid uint32, byUID bool, until time.Time, reason string) error
	// Release removes what Quarantine listed.
	Release(pid int32, uid uint32, byUID bool) error
}

// DefaultQuarantineFor is how long quarantine-process lists a process
// when neither its for argument nor Env.QuarantineFor says.
const DefaultQuarantineFor = 10 * time.Minute

// quarantineProcess puts the match's processes on the guard list.
type quarantineProcess struct {
	c     *Call
	pids  []int32
	uids  map[int32]uint32 // the uid each pid was seen with
	byUID bool
	dur   time.Duration
}

type qpTarget struct {
	PID   int32  `json:"pid"`
	UID   uint32 `json:"uid"`
	Start string `json:"start"`
}

type qpState struct {
	Targets []qpTarget `json:"targets"`
	Until   time.Time  `json:"until"`
	ByUID   bool       `json:"by_uid,omitempty"`
}

type qpResult struct {
	Listed []qpTarget `json:"listed"`
	Gone   []int32    `json:"gone,omitempty"` // exited before they could be listed
	Until  time.Time  `json:"until"`
}

func registerGuard(r *Registry) {
	r.Register("quarantine-process", Type{New: newQuarantineProcess,
		Args: map[string]ArgKind{"pid": ArgString, "uid": ArgString, "for": ArgDuration}})
}

func newQuarantineProcess(c *Call) (Action, error) {
	if c.Env.Guard == nil {
		return nil, fmt.Errorf("quarantine-process: no guard (guard.enabled): %w", ErrDisabled)
	}
	def := c.Env.QuarantineFor
	if def <= 0 {
		def = DefaultQuarantineFor
	}
	dur, err := c.Args.Duration("for", def)
	if err != nil {
		return nil, err
	}
	if dur == 0 {
		return nil, fmt.Errorf("for: want a positive duration: %w", ErrArgs)
	}
	a := &quarantineProcess{c: c, dur: dur, uids: map[int32]uint32{}}
	switch s := strings.ToLower(c.Args.Str("uid")); s {
	case "", "false", "no":
	case "true", "yes":
		a.byUID = true
	default:
		return nil, fmt.Errorf("uid: %q: want true or false: %w", s, ErrArgs)
	}
	if c.Match != nil {
		for _, ev := range c.Match.Events {
			if ev.Pid > 0 {
				if _, ok := a.uids[ev.Pid]; !ok {
					a.uids[ev.Pid] = ev.Uid
				}
			}
		}
	}
	if f := c.Args.List("pid"); len(f) > 0 {
		for _, s := range f {
			p, err := strconv.ParseInt(s, 10, 32)
			if err != nil || p <= 0 {
				return nil, fmt.Errorf("pid: %q: want a process id: %w", s, ErrArgs)
			}
			if !slices.Contains(a.pids, int32(p)) {
				a.pids = append(a.pids, int32(p))
			}
		}
	} else {
		for _, ev := range c.Match.Events {
			if ev.Pid > 0 && !slices.Contains(a.pids, ev.Pid) {
				a.pids = append(a.pids, ev.Pid)
			}
		}
	}
	if len(a.pids) == 0 {
		return nil, fmt.Errorf("quarantine-process: the matched events carry no process id (give pid): %w", ErrArgs)
	}
	return a, nil
}

// Validate: every process exists and is neither pid 1 nor semprop; with
// uid, no process runs as root (uid 0 is never quarantined).
func (a *quarantineProcess) Validate(context.Context) ([]audit.Check, json.RawMessage, error) {
	var checks []audit.Check
	st := qpState{Until: time.Now().Add(a.dur).UTC(), ByUID: a.byUID}
	for _, pid := range a.pids {
		name := "process " + strconv.Itoa(int(pid))
		if pid <= 1 || int(pid) == os.Getpid() {
			checks = append(checks, audit.Check{Name: name + " is not init or semprop"})
			return checks, nil, fmt.Errorf("%w: pid %d", ErrPrecondition, pid)
		}
		start, err := pidStart(pid)
		if err != nil {
			checks = append(checks, audit.Check{Name: name + " exists", Detail: err.Error()})
			return checks, nil, fmt.Errorf("%w: pid %d: %w", ErrPrecondition, pid, err)
		}
		checks = append(checks, audit.Check{Name: name + " exists", OK: true})
		uid, ok := a.uids[pid]
		if !ok {
			if uid, err = procUID(pid); err != nil {
				return checks, nil, fmt.Errorf("%w: pid %d: uid: %w", ErrPrecondition, pid, err)
			}
		}
		if a.byUID && uid == 0 {
			checks = append(checks, audit.Check{Name: name + " user is not root", Detail: "uid 0"})
			return checks, nil, fmt.Errorf("%w: pid %d runs as uid 0, which is never quarantined", ErrPrecondition, pid)
		}
		st.Targets = append(st.Targets, qpTarget{PID: pid, UID: uid, Start: start})
	}
	state, _ := json.Marshal(st)
	return checks, state, nil
}

func (a *quarantineProcess) Execute(_ context.Context, raw json.RawMessage) (json.RawMessage, error) {
	var st qpState
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("quarantine-process: bad state: %w", err)
	}
	res := qpResult{Until: st.Until}
	for _, t := range st.Targets {
		if start, err := pidStart(t.PID); err != nil || start != t.Start {
			res.Gone = append(res.Gone, t.PID) // exited (or the pid was reused): nothing to stop
			continue
		}
		if err := a.c.Env.Guard.Quarantine(t.PID, t.UID, st.ByUID, st.Until, a.c.Key); err != nil {
			for _, l := range res.Listed { // all or nothing: a failed action is not rolled back
				a.c.Env.Guard.Release(l.PID, l.UID, st.ByUID)
			}
			return nil, fmt.Errorf("quarantine-process: pid %d: %w", t.PID, err)
		}
		res.Listed = append(res.Listed, t)
	}
	out, _ := json.Marshal(res)
	if len(res.Listed) == 0 {
		return out, fmt.Errorf("quarantine-process: every process exited before it could be listed")
	}
	return out, nil
}

// Recover: listing again is harmless (the expiry is the same).
func (a *quarantineProcess) Recover(context.Context, json.RawMessage) (json.RawMessage, bool, error) {
	return nil, false, nil
}

// Rollback releases what Execute listed. An entry that is already gone
// (expired, released by hand, its process exited) is noted in the result;
// the rollback still succeeds.
func (a *quarantineProcess) Rollback(_ context.Context, raw, result json.RawMessage) (json.RawMessage, error) {
	var st qpState
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("quarantine-process: bad state: %w", err)
	}
	var res qpResult
	if err := json.Unmarshal(result, &res); err != nil {
		return nil, fmt.Errorf("quarantine-process: bad result: %w", err)
	}
	out := struct {
		Released []int32  `json:"released"`
		Notes    []string `json:"notes,omitempty"`
	}{Released: []int32{}}
	for _, t := range res.Listed {
		if err := a.c.Env.Guard.Release(t.PID, t.UID, st.ByUID); err != nil {
			out.Notes = append(out.Notes, err.Error())
			continue
		}
		out.Released = append(out.Released, t.PID)
	}
	return json.Marshal(out)
}

// pidStart returns pid's start time (field 22 of /proc/PID/stat).
func pidStart(pid int32) (string, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/stat")
	if err != nil {
		return "", err
	}
	_, start, ok := procinfo.ParseStat(data)
	if !ok {
		return "", fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return strconv.FormatUint(start, 10), nil
}

// procUID returns the real uid of pid.
func procUID(pid int32) (uint32, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(int(pid)) + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Uid:"); ok {
			fs := strings.Fields(rest)
			if len(fs) > 0 {
				u, err := strconv.ParseUint(fs[0], 10, 32)
				return uint32(u), err
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no Uid", pid)
}
