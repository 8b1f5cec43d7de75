package rules

import (
	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/filter"
)

// fillEnv sets every field of env from ev exactly as the filter package
// does for --filter expressions: absent numeric context fields read as -1,
// absent strings as "", path is the subject, attrs the extension
// attributes. TestEnvMatchesFilter holds the two in step.
func fillEnv(env *filter.Env, ev *event.Event) {
	c := &ev.Context
	num := func(has event.Fields, v int64) int {
		if c.Known&has == 0 {
			return -1
		}
		return int(v)
	}
	seq := -1
	if ev.Seq != 0 {
		seq = int(ev.Seq)
	}
	*env = filter.Env{
		Type: ev.Type, Source: ev.Source, Subject: ev.Subject, Path: ev.Subject,
		Seq:        seq,
		Boundary:   ev.Boundary.String(),
		Boundaries: ev.Boundaries.String(),
		Priority:   ev.Priority.String(),
		PID:        num(event.HasPID, int64(c.PID)),
		TID:        num(event.HasTID, int64(c.TID)),
		UID:        num(event.HasUID, int64(c.UID)),
		GID:        num(event.HasGID, int64(c.GID)),
		Comm:       c.Comm, Exe: c.Exe,
		Inode:   num(event.HasInode, int64(c.Inode)),
		Size:    num(event.HasSize, c.Size),
		Bytes:   num(event.HasBytes, c.Bytes),
		Offset:  num(event.HasOffset, c.Offset),
		Length:  num(event.HasLength, c.Length),
		Mode:    num(event.HasMode, int64(c.Mode)),
		OldPath: c.OldPath, Target: c.Target,
		DataContentType: ev.DataContentType,
	}
	if !ev.ID.IsZero() {
		env.ID = ev.ID.String()
	}
	if len(ev.Attrs) > 0 {
		env.Attrs = make(map[string]string, len(ev.Attrs))
		for _, a := range ev.Attrs {
			env.Attrs[a.Key] = a.Value
		}
	}
}
