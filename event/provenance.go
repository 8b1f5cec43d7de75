package event

import "strings"

// CheckNetworkOrigin reports whether e, received from the network (an HTTP
// publish, a client SDK), claims what only semprop itself may say about an
// event: where and by whom it was captured. It returns nil when e claims
// nothing of the kind, or a *FieldError wrapping ErrReserved naming the
// first such field:
//
//   - the capture context: boundary, boundaries, pid, tid, uid, gid, comm,
//     exe, inode;
//   - the daemon's own bookkeeping: rescan, hlc;
//   - a source in the daemon's namespace ("semprop://…");
//   - a type in the daemon's namespaces ("fs.…", "semprop.…").
//
// Relays between semprop instances carry these legitimately; callers
// decide when a publisher is such a relay and skip the check. It is safe
// to call concurrently on an event nobody modifies.
func CheckNetworkOrigin(e *Event) error {
	if strings.HasPrefix(e.Type, "fs.") || strings.HasPrefix(e.Type, "semprop.") {
		return reserved("type", "types fs.* and semprop.* are reserved for events semprop produces, got %q", e.Type)
	}
	if strings.HasPrefix(strings.ToLower(e.Source), "semprop:") {
		return reserved("source", "sources semprop://… are reserved for semprop itself, got %q", e.Source)
	}
	if e.Boundary != BoundaryNone {
		return reserved("boundary", "set by semprop, not by a publisher")
	}
	if e.Boundaries != 0 {
		return reserved("boundaries", "set by semprop, not by a publisher")
	}
	if e.Flags&FlagRescan != 0 {
		return reserved("rescan", "set by semprop, not by a publisher")
	}
	if !e.HLC.IsZero() {
		return reserved("hlc", "set by semprop, not by a publisher")
	}
	c := &e.Context
	for _, f := range [...]struct {
		name string
		set  bool
	}{
		{"pid", c.Known&HasPID != 0}, {"tid", c.Known&HasTID != 0},
		{"uid", c.Known&HasUID != 0}, {"gid", c.Known&HasGID != 0},
		{"comm", c.Comm != ""}, {"exe", c.Exe != ""},
		{"inode", c.Known&HasInode != 0},
	} {
		if f.set {
			return reserved(f.name, "capture context is set by semprop, not by a publisher")
		}
	}
	return nil
}
