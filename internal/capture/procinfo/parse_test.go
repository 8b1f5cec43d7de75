package procinfo

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// appendMsg appends one netlink message holding a cn_msg with a
// proc_event of kind what and union u, as the kernel sends it.
func appendMsg(b []byte, idx uint32, what uint32, ts uint64, u []byte) []byte {
	ne := binary.NativeEndian
	data := ne.AppendUint32(nil, what)
	data = ne.AppendUint32(data, 0) // cpu
	data = ne.AppendUint64(data, ts)
	data = append(data, u...)
	total := nlmsgHdrLen + cnMsgLen + len(data)
	b = ne.AppendUint32(b, uint32(total))
	b = ne.AppendUint16(b, nlmsgDone)
	b = ne.AppendUint16(b, 0)
	b = ne.AppendUint32(b, 7)
	b = ne.AppendUint32(b, 0)
	b = ne.AppendUint32(b, idx)
	b = ne.AppendUint32(b, cnValProc)
	b = ne.AppendUint32(b, 9) // seq
	b = ne.AppendUint32(b, 0)
	b = ne.AppendUint16(b, uint16(len(data)))
	b = ne.AppendUint16(b, 0)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func u32s(v ...uint32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.NativeEndian.AppendUint32(b, x)
	}
	return b
}

func collect(b []byte) ([]Event, error) {
	var evs []Event
	err := Parse(b, func(e *Event) { evs = append(evs, *e) })
	return evs, err
}

func TestParse(t *testing.T) {
	comm := append(u32s(5, 5), []byte("worker\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")...)
	two := appendMsg(appendMsg(nil, cnIdxProc, WhatFork, 10, u32s(1, 1, 2, 2)), cnIdxProc, WhatExec, 11, u32s(2, 2))
	for _, tc := range []struct {
		name    string
		in      []byte
		want    []Event
		wantErr error
	}{
		{"fork", appendMsg(nil, cnIdxProc, WhatFork, 10, u32s(100, 100, 101, 101)),
			[]Event{{What: WhatFork, Time: 10, Seq: 9, ParentPID: 100, ParentTGID: 100, PID: 101, TGID: 101}}, nil},
		{"exec", appendMsg(nil, cnIdxProc, WhatExec, 11, u32s(101, 101)),
			[]Event{{What: WhatExec, Time: 11, Seq: 9, PID: 101, TGID: 101}}, nil},
		{"exit of a thread", appendMsg(nil, cnIdxProc, WhatExit, 12, u32s(102, 101, 0, 17, 1, 1)),
			[]Event{{What: WhatExit, Time: 12, Seq: 9, PID: 102, TGID: 101}}, nil},
		{"uid", appendMsg(nil, cnIdxProc, WhatUID, 13, u32s(5, 5, 1000, 1001)),
			[]Event{{What: WhatUID, Time: 13, Seq: 9, PID: 5, TGID: 5, ID: 1001}}, nil},
		{"comm", appendMsg(nil, cnIdxProc, WhatComm, 14, comm),
			[]Event{{What: WhatComm, Time: 14, Seq: 9, PID: 5, TGID: 5, Comm: [16]byte{'w', 'o', 'r', 'k', 'e', 'r'}}}, nil},
		{"ack", appendMsg(nil, cnIdxProc, WhatNone, 15, u32s(1)),
			[]Event{{What: WhatNone, Time: 15, Seq: 9, Err: 1}}, nil},
		{"two in one datagram", two,
			[]Event{{What: WhatFork, Time: 10, Seq: 9, ParentPID: 1, ParentTGID: 1, PID: 2, TGID: 2}, {What: WhatExec, Time: 11, Seq: 9, PID: 2, TGID: 2}}, nil},
		{"another connector", appendMsg(nil, 2, WhatExec, 11, u32s(1, 1)), nil, nil},
		{"other kind (sid)", appendMsg(nil, cnIdxProc, 0x80, 11, u32s(1, 1)), nil, nil},
		{"short union", appendMsg(nil, cnIdxProc, WhatFork, 11, u32s(1, 1)), nil, nil},
		{"length past the datagram", two[:len(two)-4], []Event{{What: WhatFork, Time: 10, Seq: 9, ParentPID: 1, ParentTGID: 1, PID: 2, TGID: 2}}, ErrMalformed},
		{"trailing bytes", append(appendMsg(nil, cnIdxProc, WhatExec, 11, u32s(3, 3)), 1, 2, 3), []Event{{What: WhatExec, Time: 11, Seq: 9, PID: 3, TGID: 3}}, ErrMalformed},
		{"empty", nil, nil, nil},
	} {
		got, err := collect(tc.in)
		if !errors.Is(err, tc.wantErr) || !cmp.Equal(got, tc.want) {
			t.Errorf("%s: Parse = %+v, %v; want %+v, %v", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
	ev := Event{Comm: [16]byte{'a', 'b'}}
	if got := ev.CommString(); got != "ab" {
		t.Errorf("CommString = %q, want ab", got)
	}
	ev.Comm = [16]byte{'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x'}
	if got := ev.CommString(); len(got) != 16 {
		t.Errorf("CommString(full) = %q, want 16 bytes", got)
	}
}

func TestAppendListen(t *testing.T) {
	b := appendListen(nil, 3, 44)
	if len(b) != nlmsgHdrLen+cnMsgLen+4 {
		t.Fatalf("len = %d", len(b))
	}
	ne := binary.NativeEndian
	if ne.Uint32(b[0:]) != uint32(len(b)) || ne.Uint16(b[4:]) != nlmsgDone || ne.Uint32(b[12:]) != 44 ||
		ne.Uint32(b[16:]) != cnIdxProc || ne.Uint16(b[32:]) != 4 || ne.Uint32(b[36:]) != mcastListen {
		t.Errorf("appendListen = %x", b)
	}
}

// FuzzParse feeds arbitrary datagrams: Parse must not panic, must deliver
// only kinds it knows, and must deliver the same events again when the
// datagram is parsed twice (it keeps no state).
func FuzzParse(f *testing.F) {
	f.Add(appendMsg(nil, cnIdxProc, WhatFork, 10, u32s(100, 100, 101, 101)))
	f.Add(appendMsg(appendMsg(nil, cnIdxProc, WhatExec, 11, u32s(2, 2)), cnIdxProc, WhatExit, 12, u32s(2, 2, 0, 0, 1, 1)))
	f.Add(appendMsg(nil, cnIdxProc, WhatComm, 14, append(u32s(5, 5), "name"...)))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, errA := collect(b)
		c, errC := collect(b)
		if !cmp.Equal(a, c) || errA != errC {
			t.Fatalf("two parses differ")
		}
		for _, e := range a {
			switch e.What {
			case WhatNone, WhatFork, WhatExec, WhatExit, WhatUID, WhatGID, WhatComm:
			default:
				t.Fatalf("delivered unknown kind %#x", e.What)
			}
		}
	})
}

// FuzzProcFiles feeds arbitrary /proc/PID/stat and status contents.
func FuzzProcFiles(f *testing.F) {
	f.Add([]byte("123 (sh) S 1 123 123 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 1000 100\n"))
	f.Add([]byte("Name:\tsh\nTgid:\t4242\nUid:\t0\t1000\t0\t0\nGid:\t0\t50\t0\t0\n"))
	f.Add([]byte("7 (a b) (c)) R 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 42 0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if comm, _, ok := ParseStat(b); ok && len(comm) > len(b) {
			t.Fatalf("comm longer than the input")
		}
		if tgid, _, _, ok := parseStatus(b); ok && tgid <= 0 {
			t.Fatalf("tgid %d accepted", tgid)
		}
	})
}

func TestParseProcFiles(t *testing.T) {
	comm, start, ok := ParseStat([]byte("7 (a b) (c)) R 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 42 0\n"))
	if comm != "a b) (c)" || start != 42 || !ok {
		t.Errorf("parseStat = %q, %d, %v", comm, start, ok)
	}
	if _, _, ok := ParseStat([]byte("7 (x) R 1 2 3\n")); ok {
		t.Errorf("ParseStat(short) ok")
	}
	tgid, uid, gid, ok := parseStatus([]byte("Name:\tsh\nTgid:\t4242\nPid:\t4243\nUid:\t0\t1000\t0\t0\nGid:\t0\t50\t0\t0\n"))
	if tgid != 4242 || uid != 1000 || gid != 50 || !ok {
		t.Errorf("parseStatus = %d, %d, %d, %v", tgid, uid, gid, ok)
	}
	if _, _, _, ok := parseStatus([]byte("Tgid:\t1\nUid:\t0\n")); ok {
		t.Errorf("parseStatus(truncated) ok")
	}
}
