package event

import (
	"errors"
	"testing"
)

func TestCheckNetworkOrigin(t *testing.T) {
	for _, tc := range []struct {
		name  string
		set   func(e *Event)
		field string // "" when the event is acceptable
	}{
		{"plain", func(e *Event) {}, ""},
		{"user fields", func(e *Event) {
			e.Subject, e.DataContentType, e.Data = "/srv/a/x", "application/json", []byte(`1`)
			e.Context.SetSize(3)
			e.Context.OldPath = "/srv/a/y"
			e.SetAttr("tenant", "acme")
			e.Priority = PriorityHigh
		}, ""},
		{"type fs", func(e *Event) { e.Type = "fs.write" }, "type"},
		{"type semprop", func(e *Event) { e.Type = "semprop.deadletter" }, "type"},
		{"type fsx is fine", func(e *Event) { e.Type = "fsx.write" }, ""},
		{"source semprop", func(e *Event) { e.Source = "semprop://host/kernel" }, "source"},
		{"source semprop upper", func(e *Event) { e.Source = "SEMPROP://host/kernel" }, "source"},
		{"boundary", func(e *Event) { e.Boundary = BoundaryKernel }, "boundary"},
		{"boundary user", func(e *Event) { e.Boundary = BoundaryUser }, "boundary"},
		{"boundaries", func(e *Event) { e.Boundaries = e.Boundaries.Add(BoundaryFUSE) }, "boundaries"},
		{"rescan", func(e *Event) { e.Flags |= FlagRescan }, "rescan"},
		{"hlc", func(e *Event) { e.HLC = HLC{Wall: 1} }, "hlc"},
		{"pid", func(e *Event) { e.Context.SetPID(0) }, "pid"},
		{"tid", func(e *Event) { e.Context.SetTID(1) }, "tid"},
		{"uid 0", func(e *Event) { e.Context.SetUID(0) }, "uid"},
		{"gid", func(e *Event) { e.Context.SetGID(0) }, "gid"},
		{"comm", func(e *Event) { e.Context.Comm = "mkdir" }, "comm"},
		{"exe", func(e *Event) { e.Context.Exe = "/bin/mkdir" }, "exe"},
		{"inode", func(e *Event) { e.Context.SetInode(7) }, "inode"},
	} {
		e := &Event{Type: "app.thing", Source: "app://x", SourceID: "1"}
		tc.set(e)
		err := CheckNetworkOrigin(e)
		if tc.field == "" {
			if err != nil {
				t.Errorf("%s: CheckNetworkOrigin = %v, want nil", tc.name, err)
			}
			continue
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !errors.Is(err, ErrReserved) {
			t.Errorf("%s: CheckNetworkOrigin = %v, want a FieldError on %q wrapping ErrReserved", tc.name, err, tc.field)
		}
	}
}

// A decoded capture event is refused as a whole: the check sees what the
// structured decoder produced.
func TestCheckNetworkOriginDecoded(t *testing.T) {
	var e Event
	if err := e.UnmarshalJSON(full().AppendJSON(nil)); err != nil {
		t.Fatal(err)
	}
	if err := CheckNetworkOrigin(&e); err == nil {
		t.Fatal("CheckNetworkOrigin(decoded fs.write from the fuse boundary) = nil")
	}
}
