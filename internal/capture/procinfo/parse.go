package procinfo

import (
	"encoding/binary"
	"errors"
)

// The process connector's wire format (linux/connector.h, linux/cn_proc.h):
// a netlink datagram holds netlink messages (nlmsghdr, 16 bytes, each
// padded to 4 bytes); a message of type NLMSG_DONE holds a cn_msg (20
// bytes: idx, val, seq, ack u32; len, flags u16) and len bytes of data; for
// idx = val = CN_IDX_PROC the data is a proc_event: what u32, cpu u32,
// timestamp_ns u64 (CLOCK_MONOTONIC), then a union by what.
const (
	nlmsgHdrLen = 16
	cnMsgLen    = 20
	procEvHdr   = 16

	nlmsgNoop  = 1
	nlmsgError = 2
	nlmsgDone  = 3

	cnIdxProc = 1
	cnValProc = 1

	mcastListen = 1 // PROC_CN_MCAST_LISTEN
)

// Kinds of proc_event (enum what in linux/cn_proc.h) that Parse decodes.
const (
	WhatNone = 0x00000000 // the kernel's acknowledgement of a listen request (Err)
	WhatFork = 0x00000001
	WhatExec = 0x00000002
	WhatUID  = 0x00000004
	WhatGID  = 0x00000040
	WhatComm = 0x00000200
	WhatExit = 0x80000000
)

// ErrMalformed is returned by Parse for a datagram that does not follow the
// netlink framing.
var ErrMalformed = errors.New("procinfo: malformed connector message")

// Event is one decoded process connector event. Fields a kind does not
// carry are zero.
type Event struct {
	What uint32
	Time int64  // kernel CLOCK_MONOTONIC nanoseconds (see Now)
	Seq  uint32 // the connector sequence number (for WhatNone: that of the request)

	PID  int32 // the thread the event is about (the child for WhatFork)
	TGID int32 // its process

	ParentPID, ParentTGID int32 // WhatFork: the thread that forked and its process

	ID   uint32   // WhatUID, WhatGID: the new effective uid or gid
	Comm [16]byte // WhatComm: the new name, NUL padded
	Err  uint32   // WhatNone: the errno of the request, 0 for success
}

// CommString returns Comm up to its first NUL.
func (e *Event) CommString() string {
	for i, c := range e.Comm {
		if c == 0 {
			return string(e.Comm[:i])
		}
	}
	return string(e.Comm[:])
}

// Parse decodes the process connector events of one netlink datagram and
// calls fn for each, with an Event it reuses (fn must copy what it keeps).
// Messages of other types or other connector ids, events of other kinds
// and events shorter than their kind needs are skipped; a message whose
// length runs past the datagram ends it with ErrMalformed (the events
// before it were delivered). Parse does not allocate.
func Parse(b []byte, fn func(*Event)) error {
	var ev Event
	for len(b) >= nlmsgHdrLen {
		l := int(binary.NativeEndian.Uint32(b[0:4]))
		typ := binary.NativeEndian.Uint16(b[4:6])
		if l < nlmsgHdrLen || l > len(b) {
			return ErrMalformed
		}
		if typ == nlmsgDone {
			if parseCN(b[nlmsgHdrLen:l], &ev) {
				fn(&ev)
			}
		}
		next := (l + 3) &^ 3
		if next >= len(b) {
			return nil
		}
		b = b[next:]
	}
	if len(b) != 0 {
		return ErrMalformed
	}
	return nil
}

// parseCN decodes the cn_msg in a netlink message's payload; it reports
// whether ev holds an event to deliver.
func parseCN(b []byte, ev *Event) bool {
	if len(b) < cnMsgLen {
		return false
	}
	ne := binary.NativeEndian
	if ne.Uint32(b[0:4]) != cnIdxProc || ne.Uint32(b[4:8]) != cnValProc {
		return false
	}
	n := int(ne.Uint16(b[16:18]))
	if cnMsgLen+n > len(b) || n < procEvHdr {
		return false
	}
	d := b[cnMsgLen : cnMsgLen+n]
	*ev = Event{
		What: ne.Uint32(d[0:4]),
		Time: int64(ne.Uint64(d[8:16])),
		Seq:  ne.Uint32(b[8:12]),
	}
	u := d[procEvHdr:]
	i32 := func(off int) int32 { return int32(ne.Uint32(u[off : off+4])) }
	switch ev.What {
	case WhatNone:
		if len(u) < 4 {
			return false
		}
		ev.Err = ne.Uint32(u[0:4])
	case WhatFork:
		if len(u) < 16 {
			return false
		}
		ev.ParentPID, ev.ParentTGID, ev.PID, ev.TGID = i32(0), i32(4), i32(8), i32(12)
	case WhatExec, WhatExit:
		if len(u) < 8 {
			return false
		}
		ev.PID, ev.TGID = i32(0), i32(4)
	case WhatUID, WhatGID:
		if len(u) < 16 {
			return false
		}
		ev.PID, ev.TGID, ev.ID = i32(0), i32(4), ne.Uint32(u[12:16])
	case WhatComm:
		if len(u) < 24 {
			return false
		}
		ev.PID, ev.TGID = i32(0), i32(4)
		copy(ev.Comm[:], u[8:min(len(u), 24)])
	default:
		return false
	}
	return true
}

// appendListen appends the netlink message that asks the kernel for the
// process events (PROC_CN_MCAST_LISTEN, all kinds: the 4-byte form every
// kernel since 2.6.15 accepts).
func appendListen(b []byte, seq, portID uint32) []byte {
	ne := binary.NativeEndian
	total := nlmsgHdrLen + cnMsgLen + 4
	b = ne.AppendUint32(b, uint32(total))
	b = ne.AppendUint16(b, nlmsgDone)
	b = ne.AppendUint16(b, 0)
	b = ne.AppendUint32(b, seq)
	b = ne.AppendUint32(b, portID)
	b = ne.AppendUint32(b, cnIdxProc)
	b = ne.AppendUint32(b, cnValProc)
	b = ne.AppendUint32(b, seq)
	b = ne.AppendUint32(b, 0) // ack
	b = ne.AppendUint16(b, 4)
	b = ne.AppendUint16(b, 0)
	return ne.AppendUint32(b, mcastListen)
}
