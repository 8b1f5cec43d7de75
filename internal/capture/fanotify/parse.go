package fanotify

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The fanotify ABI, mirrored here (values are fixed by the kernel UAPI,
// include/uapi/linux/fanotify.h) so the parser builds and fuzzes on every
// platform.
const (
	metadataLen     = 24 // sizeof(struct fanotify_event_metadata)
	metadataVersion = 3  // FANOTIFY_METADATA_VERSION

	infoHeaderLen = 4 // struct fanotify_event_info_header
	fsidLen       = 8 // __kernel_fsid_t
	handleHdrLen  = 8 // struct file_handle: handle_bytes, handle_type

	infoFID         = 1
	infoDFIDName    = 2
	infoDFID        = 3
	infoPIDFD       = 4
	infoError       = 5
	infoRange       = 6
	infoMnt         = 7
	infoOldDFIDName = 10
	infoNewDFIDName = 12

	maskModify     = 0x2
	maskAttrib     = 0x4
	maskCloseWrite = 0x8
	maskMovedFrom  = 0x40
	maskMovedTo    = 0x80
	maskCreate     = 0x100
	maskDelete     = 0x200
	maskDeleteSelf = 0x400
	maskMoveSelf   = 0x800
	maskOverflow   = 0x4000
	maskFSError    = 0x8000
	maskRename     = 0x10000000
	maskOnDir      = 0x40000000
)

// Parse errors. A buffer error stops parsing (the event lengths can no longer
// be trusted); a record error spoils only the event that holds it.
var (
	errShortBuffer = errors.New("fanotify: truncated event metadata")
	errBadVersion  = errors.New("fanotify: unsupported metadata version")
	errBadLength   = errors.New("fanotify: bad event length")
	errBadRecord   = errors.New("fanotify: malformed info record")
)

// rawEvent is one fanotify event as read from the group's file descriptor.
// Its byte slices alias the read buffer: they are valid until the next read.
//
// A file identifier (FID, DFID, OldDFID, NewDFID) is kept as the bytes from
// the fsid to the end of the file handle (fsid, handle_bytes, handle_type,
// f_handle): equal objects have equal bytes, so it serves directly as a map
// key, and handleOf splits it for open_by_handle_at.
type rawEvent struct {
	Mask uint64
	FD   int32
	PID  int32

	FID     []byte // the object itself (FAN_EVENT_INFO_TYPE_FID, or the target with FAN_REPORT_TARGET_FID)
	DFID    []byte // the parent directory (DFID or DFID_NAME)
	Name    []byte // the entry name in DFID ("." for the directory itself)
	OldDFID []byte // FAN_RENAME: the source directory and name
	OldName []byte
	NewDFID []byte // FAN_RENAME: the target directory and name
	NewName []byte

	PIDFD      int32 // -1 when not reported
	Error      int32 // FAN_FS_ERROR
	ErrorCount uint32
	Records    int   // info records seen
	Bad        error // set when an info record was malformed; the event is unreliable
}

func (e *rawEvent) reset() {
	*e = rawEvent{PIDFD: -1}
}

// parser walks a buffer filled by read(2) on a fanotify descriptor.
type parser struct {
	buf []byte
	off int
}

// next decodes the next event into ev. It returns false at the end of the
// buffer or on a buffer error (returned as err). A malformed info record does
// not stop parsing: ev.Bad is set and the walk continues with the next event.
func (p *parser) next(ev *rawEvent) (bool, error) {
	ev.reset()
	rest := p.buf[p.off:]
	if len(rest) == 0 {
		return false, nil
	}
	if len(rest) < metadataLen {
		return false, errShortBuffer
	}
	evLen := binary.NativeEndian.Uint32(rest[0:4])
	if rest[4] != metadataVersion {
		return false, fmt.Errorf("%w: %d", errBadVersion, rest[4])
	}
	metaLen := int(binary.NativeEndian.Uint16(rest[6:8]))
	if evLen < metadataLen || uint64(evLen) > uint64(len(rest)) || metaLen < metadataLen || metaLen > int(evLen) {
		return false, fmt.Errorf("%w: event %d, metadata %d, buffer %d", errBadLength, evLen, metaLen, len(rest))
	}
	ev.Mask = binary.NativeEndian.Uint64(rest[8:16])
	ev.FD = int32(binary.NativeEndian.Uint32(rest[16:20]))
	ev.PID = int32(binary.NativeEndian.Uint32(rest[20:24]))
	p.off += int(evLen)
	ev.Bad = parseInfo(ev, rest[metaLen:evLen])
	return true, nil
}

// parseInfo decodes the info records that follow an event's metadata.
func parseInfo(ev *rawEvent, b []byte) error {
	for len(b) > 0 {
		if len(b) < infoHeaderLen {
			return errBadRecord
		}
		typ := b[0]
		n := int(binary.NativeEndian.Uint16(b[2:4]))
		if n < infoHeaderLen || n > len(b) {
			return errBadRecord
		}
		rec := b[infoHeaderLen:n]
		b = b[n:]
		ev.Records++
		switch typ {
		case infoFID, infoDFID, infoDFIDName, infoOldDFIDName, infoNewDFIDName:
			fid, name, err := parseFID(rec, typ != infoFID && typ != infoDFID)
			if err != nil {
				return err
			}
			switch typ {
			case infoFID:
				ev.FID = fid
			case infoDFID:
				ev.DFID = fid
			case infoDFIDName:
				ev.DFID, ev.Name = fid, name
			case infoOldDFIDName:
				ev.OldDFID, ev.OldName = fid, name
			case infoNewDFIDName:
				ev.NewDFID, ev.NewName = fid, name
			}
		case infoPIDFD:
			if len(rec) < 4 {
				return errBadRecord
			}
			ev.PIDFD = int32(binary.NativeEndian.Uint32(rec[0:4]))
		case infoError:
			if len(rec) < 8 {
				return errBadRecord
			}
			ev.Error = int32(binary.NativeEndian.Uint32(rec[0:4]))
			ev.ErrorCount = binary.NativeEndian.Uint32(rec[4:8])
		default:
			// infoRange, infoMnt and future types: skipped by length.
		}
	}
	return nil
}

// parseFID splits a FID record body (fsid, struct file_handle, and for the
// *_NAME types a NUL-terminated name) into the identifier bytes and the name.
func parseFID(rec []byte, named bool) (fid, name []byte, err error) {
	if len(rec) < fsidLen+handleHdrLen {
		return nil, nil, errBadRecord
	}
	hb := binary.NativeEndian.Uint32(rec[fsidLen : fsidLen+4])
	end := uint64(fsidLen+handleHdrLen) + uint64(hb)
	if end > uint64(len(rec)) {
		return nil, nil, errBadRecord
	}
	fid = rec[:end:end]
	if !named {
		return fid, nil, nil
	}
	name = rec[end:]
	for i, c := range name {
		if c == 0 {
			return fid, name[:i:i], nil
		}
	}
	return nil, nil, errBadRecord // a name must be NUL-terminated
}

// handleOf splits identifier bytes (as kept in rawEvent) into the handle
// type and the opaque f_handle bytes. ok is false for a malformed fid.
func handleOf(fid []byte) (typ int32, handle []byte, ok bool) {
	if len(fid) < fsidLen+handleHdrLen {
		return 0, nil, false
	}
	hb := binary.NativeEndian.Uint32(fid[fsidLen : fsidLen+4])
	if uint64(fsidLen+handleHdrLen)+uint64(hb) != uint64(len(fid)) {
		return 0, nil, false
	}
	typ = int32(binary.NativeEndian.Uint32(fid[fsidLen+4 : fsidLen+8]))
	return typ, fid[fsidLen+handleHdrLen:], true
}

// join appends name to dir ("." is the directory itself).
func join(dir string, name []byte) string {
	if len(name) == 0 || (len(name) == 1 && name[0] == '.') {
		return dir
	}
	if dir == "/" {
		return "/" + string(name)
	}
	return dir + "/" + string(name)
}
