package fanotify

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the fuzz seed corpus in testdata/fuzz")

// buf builds fanotify read buffers by hand, in the kernel's layout.
type buf struct{ b []byte }

func (w *buf) event(mask uint64, pid int32, records ...[]byte) *buf {
	n := metadataLen
	for _, r := range records {
		n += len(r)
	}
	var m [metadataLen]byte
	binary.NativeEndian.PutUint32(m[0:], uint32(n))
	m[4] = metadataVersion
	binary.NativeEndian.PutUint16(m[6:], metadataLen)
	binary.NativeEndian.PutUint64(m[8:], mask)
	fd := int32(-1)
	binary.NativeEndian.PutUint32(m[16:], uint32(fd))
	binary.NativeEndian.PutUint32(m[20:], uint32(pid))
	w.b = append(w.b, m[:]...)
	for _, r := range records {
		w.b = append(w.b, r...)
	}
	return w
}

// fidBytes is the identifier of a test object: fsid 7:7, type 1, handle
// (ino, gen).
func fidBytes(ino uint32) []byte {
	b := make([]byte, fsidLen+handleHdrLen+8)
	binary.NativeEndian.PutUint32(b[0:], 7)
	binary.NativeEndian.PutUint32(b[4:], 7)
	binary.NativeEndian.PutUint32(b[8:], 8)
	binary.NativeEndian.PutUint32(b[12:], 1)
	binary.NativeEndian.PutUint32(b[16:], ino)
	binary.NativeEndian.PutUint32(b[20:], 1)
	return b
}

// record is an info record: header, body, padded to 4 bytes like the kernel.
func record(typ byte, body ...[]byte) []byte {
	r := []byte{typ, 0, 0, 0}
	for _, b := range body {
		r = append(r, b...)
	}
	for len(r)%4 != 0 {
		r = append(r, 0)
	}
	binary.NativeEndian.PutUint16(r[2:], uint16(len(r)))
	return r
}

func name(s string) []byte { return append([]byte(s), 0) }

func i32(v int32) []byte { return binary.NativeEndian.AppendUint32(nil, uint32(v)) }

// parsed is the comparable form of a rawEvent.
type parsed struct {
	Mask                       uint64
	PID, PIDFD, Error          int32
	FID, DFID, OldDFID, NewDFI string
	Name, OldName, NewName     string
	Records                    int
	Bad                        bool
}

func parseAll(b []byte) ([]parsed, error) {
	p := parser{buf: b}
	var out []parsed
	var ev rawEvent
	for {
		ok, err := p.next(&ev)
		if err != nil || !ok {
			return out, err
		}
		out = append(out, parsed{
			Mask: ev.Mask, PID: ev.PID, PIDFD: ev.PIDFD, Error: ev.Error,
			FID: fidStr(ev.FID), DFID: fidStr(ev.DFID), OldDFID: fidStr(ev.OldDFID), NewDFI: fidStr(ev.NewDFID),
			Name: string(ev.Name), OldName: string(ev.OldName), NewName: string(ev.NewName),
			Records: ev.Records, Bad: ev.Bad != nil,
		})
	}
}

func fidStr(fid []byte) string {
	if fid == nil {
		return ""
	}
	typ, h, ok := handleOf(fid)
	if !ok || len(h) < 4 {
		return "bad"
	}
	return fmt.Sprintf("%d:%d", typ, binary.NativeEndian.Uint32(h))
}

func parseCases() []struct {
	name    string
	in      []byte
	want    []parsed
	wantErr error
} {
	var b1, b2, b3, b4 buf
	b1.event(maskCreate|maskModify|maskCloseWrite, 42,
		record(infoDFIDName, fidBytes(10), name("file.txt")),
		record(infoFID, fidBytes(11)))
	b2.event(maskRename|maskOnDir, 43,
		record(infoOldDFIDName, fidBytes(10), name("a")),
		record(infoNewDFIDName, fidBytes(12), name("b")),
		record(infoFID, fidBytes(13))).
		event(maskOverflow, -1).
		event(maskAttrib|maskOnDir, 44, record(infoDFIDName, fidBytes(10), name(".")), record(infoPIDFD, i32(9)))
	b3.event(maskFSError, 0, record(infoError, i32(-5), i32(3)), record(99, []byte("future")), record(infoDFID, fidBytes(5)))
	// A malformed record spoils its event only; the next one parses.
	b4.event(maskCreate, 1, record(infoDFIDName, fidBytes(10), []byte("noterminator"))).
		event(maskDelete, 2, record(infoDFIDName, fidBytes(10), name("x")))
	bigHandle := fidBytes(1)
	binary.NativeEndian.PutUint32(bigHandle[8:], 1<<30) // handle_bytes far beyond the record
	var b5 buf
	b5.event(maskCreate, 1, record(infoFID, bigHandle)).event(maskDelete, 2)
	zeroLen := buf{}
	zeroLen.event(maskCreate, 1, []byte{infoFID, 0, 0, 0})
	badVersion := append([]byte(nil), b1.b...)
	badVersion[4] = 2
	longEvent := append([]byte(nil), b1.b...)
	binary.NativeEndian.PutUint32(longEvent[0:], uint32(len(longEvent)+4))
	shortEvent := append([]byte(nil), b1.b...)
	binary.NativeEndian.PutUint32(shortEvent[0:], 8)

	return []struct {
		name    string
		in      []byte
		want    []parsed
		wantErr error
	}{
		{"empty", nil, nil, nil},
		{"create merged", b1.b, []parsed{{Mask: maskCreate | maskModify | maskCloseWrite, PID: 42, PIDFD: -1,
			DFID: "1:10", Name: "file.txt", FID: "1:11", Records: 2}}, nil},
		{"rename, overflow, dir attrib", b2.b, []parsed{
			{Mask: maskRename | maskOnDir, PID: 43, PIDFD: -1, OldDFID: "1:10", OldName: "a", NewDFI: "1:12", NewName: "b", FID: "1:13", Records: 3},
			{Mask: maskOverflow, PID: -1, PIDFD: -1},
			{Mask: maskAttrib | maskOnDir, PID: 44, PIDFD: 9, DFID: "1:10", Name: ".", Records: 2},
		}, nil},
		{"error and unknown record", b3.b, []parsed{{Mask: maskFSError, PIDFD: -1, Error: -5, DFID: "1:5", Records: 3}}, nil},
		{"unterminated name", b4.b, []parsed{
			{Mask: maskCreate, PID: 1, PIDFD: -1, Records: 1, Bad: true},
			{Mask: maskDelete, PID: 2, PIDFD: -1, DFID: "1:10", Name: "x", Records: 1},
		}, nil},
		{"handle overruns record", b5.b, []parsed{{Mask: maskCreate, PID: 1, PIDFD: -1, Records: 1, Bad: true}, {Mask: maskDelete, PID: 2, PIDFD: -1}}, nil},
		{"zero record length", zeroLen.b, []parsed{{Mask: maskCreate, PID: 1, PIDFD: -1, Bad: true}}, nil},
		{"bad version", badVersion, nil, errBadVersion},
		{"event longer than buffer", longEvent, nil, errBadLength},
		{"event shorter than metadata", shortEvent, nil, errBadLength},
		{"truncated metadata", b1.b[:10], nil, errShortBuffer},
		{"trailing garbage", append(append([]byte(nil), b1.b...), 1, 2, 3), []parsed{{Mask: maskCreate | maskModify | maskCloseWrite, PID: 42, PIDFD: -1,
			DFID: "1:10", Name: "file.txt", FID: "1:11", Records: 2}}, errShortBuffer},
	}
}

func TestParse(t *testing.T) {
	for _, tc := range parseCases() {
		got, err := parseAll(tc.in)
		if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
			t.Errorf("%s: parse error %v, want %v", tc.name, err, tc.wantErr)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s: events (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestParseNoAllocs(t *testing.T) {
	cases := parseCases()
	in := cases[2].in
	var ev rawEvent
	allocs := testing.AllocsPerRun(100, func() {
		p := parser{buf: in}
		for {
			if ok, _ := p.next(&ev); !ok {
				break
			}
		}
	})
	if allocs != 0 {
		t.Errorf("parse allocates %v times per buffer, want 0", allocs)
	}
}

func FuzzParse(f *testing.F) {
	dir := filepath.Join("testdata", "fuzz", "FuzzParse")
	if *update {
		os.MkdirAll(dir, 0o755)
		for i, tc := range parseCases() {
			body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(tc.in)) + ")\n"
			os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed%02d", i)), []byte(body), 0o644)
		}
	}
	for _, tc := range parseCases() {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p := parser{buf: b}
		var ev rawEvent
		for i := 0; ; i++ {
			ok, err := p.next(&ev)
			if err != nil || !ok {
				break
			}
			if i > len(b) {
				t.Fatalf("parser made no progress")
			}
			for _, fid := range [][]byte{ev.FID, ev.DFID, ev.OldDFID, ev.NewDFID} {
				if fid == nil {
					continue
				}
				if !bytes.Contains(b, fid) {
					t.Fatalf("fid not within the buffer")
				}
				if _, _, ok := handleOf(fid); !ok {
					t.Fatalf("parser accepted a fid that handleOf rejects")
				}
			}
			if bytes.IndexByte(ev.Name, 0) >= 0 {
				t.Fatalf("name %q holds a NUL", ev.Name)
			}
			join("/x", ev.Name)
		}
	})
}
