package rules

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/cep"
)

// compileField compiles a key expression for by and distinct: an event
// field by its --filter name (pid, uid, comm, subject, ...), an extension
// attribute (attrs["x"]), or dir(...) / base(...) of either. A field the
// event lacks reads as "".
func compileField(src string) (cep.KeyFunc, error) {
	s := strings.TrimSpace(src)
	for _, fn := range []struct {
		name string
		f    func(string) string
	}{{"dir", path.Dir}, {"base", path.Base}} {
		if inner, ok := strings.CutPrefix(s, fn.name+"("); ok && strings.HasSuffix(inner, ")") {
			k, err := compileField(strings.TrimSuffix(inner, ")"))
			if err != nil {
				return nil, err
			}
			f := fn.f
			return func(ev *event.Event) string {
				v := k(ev)
				if v == "" {
					return ""
				}
				return f(v)
			}, nil
		}
	}
	if rest, ok := strings.CutPrefix(s, "attrs"); ok {
		var name string
		switch {
		case strings.HasPrefix(rest, `["`) && strings.HasSuffix(rest, `"]`):
			name = rest[2 : len(rest)-2]
		case strings.HasPrefix(rest, "."):
			name = rest[1:]
		}
		if !validAttr(name) {
			return nil, fmt.Errorf("%q: want attrs[\"name\"] with 1-20 lower-case letters or digits: %w", src, ErrField)
		}
		return func(ev *event.Event) string { v, _ := ev.Attr(name); return v }, nil
	}
	if f, ok := strFields[s]; ok {
		return f, nil
	}
	if f, ok := numFields[s]; ok {
		return func(ev *event.Event) string {
			v, ok := f(ev)
			if !ok {
				return ""
			}
			return strconv.FormatInt(v, 10)
		}, nil
	}
	return nil, fmt.Errorf("%q: %w", src, ErrField)
}

func validAttr(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

var strFields = map[string]cep.KeyFunc{
	"type":            func(ev *event.Event) string { return ev.Type },
	"source":          func(ev *event.Event) string { return ev.Source },
	"subject":         func(ev *event.Event) string { return ev.Subject },
	"path":            func(ev *event.Event) string { return ev.Subject },
	"comm":            func(ev *event.Event) string { return ev.Context.Comm },
	"exe":             func(ev *event.Event) string { return ev.Context.Exe },
	"oldpath":         func(ev *event.Event) string { return ev.Context.OldPath },
	"target":          func(ev *event.Event) string { return ev.Context.Target },
	"boundary":        func(ev *event.Event) string { return ev.Boundary.String() },
	"boundaries":      func(ev *event.Event) string { return ev.Boundaries.String() },
	"priority":        func(ev *event.Event) string { return ev.Priority.String() },
	"datacontenttype": func(ev *event.Event) string { return ev.DataContentType },
	"id": func(ev *event.Event) string {
		if ev.ID.IsZero() {
			return ""
		}
		return ev.ID.String()
	},
}

func known(ev *event.Event, f event.Fields, v int64) (int64, bool) { return v, ev.Context.Known&f != 0 }

var numFields = map[string]func(*event.Event) (int64, bool){
	"seq":    func(ev *event.Event) (int64, bool) { return int64(ev.Seq), ev.Seq != 0 },
	"pid":    func(ev *event.Event) (int64, bool) { return known(ev, event.HasPID, int64(ev.Context.PID)) },
	"tid":    func(ev *event.Event) (int64, bool) { return known(ev, event.HasTID, int64(ev.Context.TID)) },
	"uid":    func(ev *event.Event) (int64, bool) { return known(ev, event.HasUID, int64(ev.Context.UID)) },
	"gid":    func(ev *event.Event) (int64, bool) { return known(ev, event.HasGID, int64(ev.Context.GID)) },
	"inode":  func(ev *event.Event) (int64, bool) { return known(ev, event.HasInode, int64(ev.Context.Inode)) },
	"size":   func(ev *event.Event) (int64, bool) { return known(ev, event.HasSize, ev.Context.Size) },
	"bytes":  func(ev *event.Event) (int64, bool) { return known(ev, event.HasBytes, ev.Context.Bytes) },
	"offset": func(ev *event.Event) (int64, bool) { return known(ev, event.HasOffset, ev.Context.Offset) },
	"length": func(ev *event.Event) (int64, bool) { return known(ev, event.HasLength, ev.Context.Length) },
	"mode":   func(ev *event.Event) (int64, bool) { return known(ev, event.HasMode, int64(ev.Context.Mode)) },
}
