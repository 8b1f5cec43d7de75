package event

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/semprop/semprop/internal/nanoclock"
)

// full returns an event with every field set.
func full() *Event {
	e := &Event{
		ID:              NewID(),
		Seq:             42,
		Type:            "fs.write",
		Source:          "semprop://host/fuse",
		Subject:         "/data/notes/a \"quoted\" ☃.md",
		Time:            time.Date(2026, 11, 27, 10, 0, 0, 123456789, time.UTC),
		HLC:             HLC{Wall: 1764237600123456789, Logical: 3},
		Priority:        PriorityHigh,
		Boundary:        BoundaryFUSE,
		Boundaries:      Boundaries(0).Add(BoundaryFUSE).Add(BoundaryKernel),
		Flags:           FlagRescan,
		Attrs:           []Attr{{"tenant", "acme"}, {"traceid", "abc\n"}},
		DataContentType: "application/json",
		Data:            []byte(`{"k":[1,2,"x"]}`),
	}
	c := &e.Context
	c.SetPID(4242)
	c.SetTID(4243)
	c.SetUID(0)
	c.SetGID(1000)
	c.Comm = "cp"
	c.Exe = "/usr/bin/cp"
	c.SetInode(131077)
	c.SetSize(1024)
	c.SetBytes(2048)
	c.SetRange(0, 1024)
	c.SetMode(0o100644)
	c.OldPath = "/data/notes/old.md"
	c.Target = "../x"
	return e
}

var cmpEvents = cmp.Options{cmpopts.EquateEmpty(), cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })}

func TestBinaryRoundTrip(t *testing.T) {
	for name, e := range map[string]*Event{
		"full":   full(),
		"empty":  {},
		"binary": {Type: "x", Flags: FlagDataBinary, Data: []byte{0, 1, 2, 255}},
		"epoch":  {Type: "x", Time: time.Unix(0, 0).UTC()},
		"neg":    {Type: "x", Priority: PriorityBulk, Context: Context{Known: HasPID | HasSize, PID: -1, Size: -5}},
	} {
		b, err := e.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var got Event
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatalf("%s: UnmarshalBinary: %v", name, err)
		}
		if diff := cmp.Diff(e, &got, cmpEvents); diff != "" {
			t.Errorf("%s: round trip (-want +got):\n%s", name, diff)
		}
	}
}

func TestBinaryRejects(t *testing.T) {
	good, _ := full().MarshalBinary()
	for name, in := range map[string][]byte{
		"empty":     nil,
		"version":   append([]byte{2}, good[1:]...),
		"truncated": good[:len(good)-1],
		"trailing":  append(append([]byte(nil), good...), 0),
	} {
		var e Event
		if err := e.UnmarshalBinary(in); !errors.Is(err, ErrBinary) {
			t.Errorf("%s: UnmarshalBinary = %v, want ErrBinary", name, err)
		}
	}
}

func TestJSONRoundTrip(t *testing.T) {
	for name, e := range map[string]*Event{
		"full":     full(),
		"minimal":  {ID: NewID(), Type: "vector.insert", Source: "app"},
		"binary":   {ID: NewID(), Type: "x", Source: "s", Flags: FlagDataBinary, DataContentType: "application/octet-stream", Data: []byte{0, 1, 2, 255}},
		"sourceid": {SourceID: "6f1c0b1e-uuid", Type: "x", Source: "s"},
	} {
		b, err := e.MarshalJSON()
		if err != nil {
			t.Fatalf("%s: MarshalJSON: %v", name, err)
		}
		var got Event
		if err := got.UnmarshalJSON(b); err != nil {
			t.Fatalf("%s: UnmarshalJSON(%s): %v", name, b, err)
		}
		if diff := cmp.Diff(e, &got, cmpEvents); diff != "" {
			t.Errorf("%s: round trip via %s (-want +got):\n%s", name, b, diff)
		}
	}
}

func TestJSONContract(t *testing.T) {
	// The example of docs/http-api.md, "Event JSON", field by field.
	in := `{"specversion":"1.0","id":"01JD0000000000000000000000","source":"semprop://HOST/fuse","type":"fs.write",
 "subject":"/data/notes/a.md","time":"2026-11-27T10:00:00.123456789Z",
 "seq":42,"boundary":"fuse","boundaries":"fuse,kernel","priority":"normal","hlc":"1764237600123456789.0",
 "pid":4242,"tid":4242,"uid":1000,"gid":1000,"comm":"cp","inode":131077,"size":1024,
 "oldpath":"/data/notes/old.md","datacontenttype":"application/json","data":{"a": 1}}`
	var e Event
	if err := e.UnmarshalJSON([]byte(in)); err != nil {
		t.Fatal(err)
	}
	want := Event{
		ID: mustID(t, "01JD0000000000000000000000"), Seq: 42, Type: "fs.write", Source: "semprop://HOST/fuse",
		Subject: "/data/notes/a.md", Time: time.Date(2026, 11, 27, 10, 0, 0, 123456789, time.UTC),
		HLC: HLC{Wall: 1764237600123456789}, Boundary: BoundaryFUSE, Boundaries: 1<<BoundaryFUSE | 1<<BoundaryKernel,
		Context: Context{Known: HasPID | HasTID | HasUID | HasGID | HasInode | HasSize, PID: 4242, TID: 4242,
			UID: 1000, GID: 1000, Comm: "cp", Inode: 131077, Size: 1024, OldPath: "/data/notes/old.md"},
		DataContentType: "application/json", Data: []byte(`{"a":1}`),
	}
	if diff := cmp.Diff(&want, &e, cmpEvents); diff != "" {
		t.Errorf("decode (-want +got):\n%s", diff)
	}
	out := string(e.AppendJSON(nil))
	for _, frag := range []string{`"boundaries":"fuse,kernel"`, `"pid":4242`, `"inode":131077`, `"data":{"a":1}`, `"time":"2026-11-27T10:00:00.123456789Z"`} {
		if !strings.Contains(out, frag) {
			t.Errorf("AppendJSON = %s, missing %s", out, frag)
		}
	}
	if strings.Contains(out, `"bytes"`) {
		t.Errorf("AppendJSON = %s: unknown field bytes must be absent", out)
	}
}

func mustID(t *testing.T, s string) ID {
	t.Helper()
	id, err := ParseID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestJSONErrorsNameField(t *testing.T) {
	const head = `{"specversion":"1.0","id":"1","source":"s",`
	for _, tc := range []struct{ in, field string }{
		{`{`, ""},
		{`[]`, ""},
		{`{"type":"x"}`, "specversion"},
		{`{"specversion":"0.3","type":"x"}`, "specversion"},
		{`{"specversion":"1.0"}`, "type"},
		{`{"specversion":"1.0","type":5}`, "type"},
		{`{"specversion":"1.0","type":"x","source":"s"}`, "id"},
		{`{"specversion":"1.0","type":"x","id":"1"}`, "source"},
		{`{"specversion":"1.0","type":"x","id":"","source":"s"}`, "id"},
		{`{"specversion":"1.0","type":"x","id":"1","source":""}`, "source"},
		{head + `"type":"x","pid":"abc"}`, "pid"},
		{head + `"type":"x","uid":-1}`, "uid"},
		{head + `"type":"x","time":"yesterday"}`, "time"},
		{head + `"type":"x","priority":"urgent"}`, "priority"},
		{head + `"type":"x","Bad_Key":"v"}`, "Bad_Key"},
		{head + `"type":"x","data":1,"data_base64":"AA=="}`, "data_base64"},
		{head + `"type":"x","data_base64":"!!"}`, "data_base64"},
		// Invalid Unicode is refused, never replaced.
		{head + "\"type\":\"x\",\"subject\":\"a\xffb\"}", "subject"},
		{head + "\"type\":\"x\",\"subject\":\"\xc3\"}", "subject"},
		{head + `"type":"x","subject":"\ud800"}`, "subject"},
		{head + `"type":"x","subject":"\udc00\ud800"}`, "subject"},
		{head + `"type":"x","subject":"\q"}`, "subject"},
		{head + "\"type\":\"x\",\"tenant\":\"\xed\xa0\x80\"}", "tenant"},
		{head + "\"type\":\"x\",\"data\":{\"k\":\"\xff\"}}", "data"},
		{head + `"type":"x","data":["\ud83d"]}`, "data"},
		{head + `"type":"x","data":"\x"}`, "data"},
		{head + `"type":"x","data":{"a":}}`, "data"},
		{head + "\"type\":\"x\",\"tenant\":[\"\xff\"]}", "tenant"},
	} {
		var e Event
		err := e.UnmarshalJSON([]byte(tc.in))
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("UnmarshalJSON(%q) = %v, want a FieldError for %q", tc.in, err, tc.field)
		}
	}
}

// ParseDraft accepts what a producer's tools complete: no id, no source.
func TestParseDraftAndComplete(t *testing.T) {
	e, err := ParseDraft([]byte(`{"specversion":"1.0","type":"a.b","data":{"x": 1}}`))
	if err != nil {
		t.Fatal(err)
	}
	e.Complete("app://me")
	if e.ID.IsZero() || e.Source != "app://me" || string(e.Data) != `{"x":1}` {
		t.Fatalf("completed draft = %+v", e)
	}
	var back Event
	if err := back.UnmarshalJSON(e.AppendJSON(nil)); err != nil {
		t.Fatalf("completed draft does not decode: %v", err)
	}
	e = &Event{SourceID: "mine", Source: "app://x", Type: "a"}
	e.Complete("app://other")
	if !e.ID.IsZero() || e.Source != "app://x" {
		t.Fatalf("Complete changed what was set: %+v", e)
	}
	if _, err := ParseDraft([]byte(`{"specversion":"1.0","type":"a.b","id":""}`)); err == nil {
		t.Fatal("ParseDraft accepted an empty id")
	}
}

func TestParseJSONBatch(t *testing.T) {
	evs, err := ParseJSONBatch([]byte(`[{"specversion":"1.0","type":"a","source":"s","id":"1"},{"specversion":"1.0","type":"b","source":"s","id":"2"}]`))
	if err != nil || len(evs) != 2 || evs[1].Type != "b" || evs[1].SourceID != "2" {
		t.Fatalf("ParseJSONBatch = %v, %v", evs, err)
	}
	for in, field := range map[string]string{
		`[{"specversion":"1.0","type":"a","source":"s","id":"1"},{"specversion":"1.0"}]`:                     "[1].type",
		`[{"specversion":"1.0","type":"a","source":"s","id":"1"},{"specversion":"1.0","type":"a","id":"2"}]`: "[1].source",
		`[{"specversion":"1.0","type":"a","source":"s"}]`:                                                    "[0].id",
		`[{"specversion":"1.0","type":"a","source":"s","id":"1","data":"\ud800"}]`:                           "[0].data",
	} {
		_, err = ParseJSONBatch([]byte(in))
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != field {
			t.Errorf("ParseJSONBatch(%s) error = %v, want field %s", in, err, field)
		}
	}
}

func TestValidate(t *testing.T) {
	big := make([]byte, 1<<20+1)
	for i := range big {
		big[i] = ' '
	}
	big[0] = '1'
	for _, tc := range []struct {
		name  string
		e     Event
		field string
		err   error
	}{
		{"ok", Event{Type: "vector.insert", Data: []byte(`{}`)}, "", nil},
		{"ok-tokens", Event{Type: "a-b_c.0.z"}, "", nil},
		{"no type", Event{}, "type", ErrInvalid},
		{"white space", Event{Type: "fs write"}, "type", ErrInvalid},
		{"empty token", Event{Type: "fs..write"}, "type", ErrInvalid},
		{"trailing dot", Event{Type: "fs."}, "type", ErrInvalid},
		{"leading dot", Event{Type: ".fs"}, "type", ErrInvalid},
		{"wildcard", Event{Type: "fs.*"}, "type", ErrInvalid},
		{"data too large", Event{Type: "x", Data: big}, "data", ErrTooLarge},
		{"data not json", Event{Type: "x", Data: []byte("hello")}, "data", ErrInvalid},
		{"binary data", Event{Type: "x", Data: []byte("hello"), Flags: FlagDataBinary}, "", nil},
		{"subject too long", Event{Type: "x", Subject: strings.Repeat("a", 4097)}, "subject", ErrTooLarge},
		{"bad utf8", Event{Type: "x", Subject: "\xff"}, "subject", ErrInvalid},
		{"attr key", Event{Type: "x", Attrs: []Attr{{"Tenant", "a"}}}, "Tenant", ErrInvalid},
		{"attr reserved", Event{Type: "x", Attrs: []Attr{{"pid", "1"}}}, "pid", ErrInvalid},
		{"attr dup", Event{Type: "x", Attrs: []Attr{{"a", "1"}, {"a", "2"}}}, "a", ErrInvalid},
		{"priority", Event{Type: "x", Priority: 9}, "priority", ErrInvalid},
	} {
		err := tc.e.Validate(Limits{})
		if tc.err == nil {
			if err != nil {
				t.Errorf("%s: Validate = %v, want nil", tc.name, err)
			}
			continue
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !errors.Is(err, tc.err) {
			t.Errorf("%s: Validate = %v, want %v on field %q", tc.name, err, tc.err, tc.field)
		}
	}
}

func TestBoundaries(t *testing.T) {
	s := Boundaries(0).Add(BoundaryKernel).Add(BoundaryFUSE)
	if got := s.String(); got != "fuse,kernel" {
		t.Errorf("String = %q, want fuse,kernel", got)
	}
	all := s.Add(BoundaryUser).Add(BoundaryPeer)
	if got := all.String(); got != "fuse,kernel,user,peer" {
		t.Errorf("String = %q", got)
	}
	back, ok := ParseBoundaries(all.String())
	if !ok || back != all {
		t.Errorf("ParseBoundaries(%q) = %v, %v", all.String(), back, ok)
	}
	if _, ok := ParseBoundaries("fuse,disk"); ok {
		t.Error("ParseBoundaries accepted an unknown name")
	}
}

func TestIDsOrdered(t *testing.T) {
	prev := NewID()
	for range 10000 {
		id := NewID()
		if string(id[:]) <= string(prev[:]) {
			t.Fatalf("NewID not increasing: %s after %s", id, prev)
		}
		prev = id
	}
	back, err := ParseID(prev.String())
	if err != nil || back != prev {
		t.Fatalf("ParseID(%s) = %s, %v", prev, back, err)
	}
}

func TestHLC(t *testing.T) {
	now := int64(1000)
	c := NewClockFunc(500*time.Millisecond, func() int64 { return now })
	a := c.Now()
	b := c.Now()
	if a != (HLC{1000, 0}) || b != (HLC{1000, 1}) {
		t.Fatalf("Now = %v, %v; want 1000.0, 1000.1", a, b)
	}
	// A remote ahead (within the offset) pulls the clock forward.
	r, err := c.Update(HLC{Wall: 2000, Logical: 7})
	if err != nil || r != (HLC{2000, 8}) {
		t.Fatalf("Update = %v, %v; want 2000.8", r, err)
	}
	if n := c.Now(); n.Compare(r) <= 0 {
		t.Fatalf("Now after Update = %v, not after %v", n, r)
	}
	// Behind: only the logical counter moves.
	r2, _ := c.Update(HLC{Wall: 10})
	if r2.Compare(r) <= 0 {
		t.Fatalf("Update(behind) = %v, not after %v", r2, r)
	}
	// Physical time moves on: logical resets.
	now = 5000
	if n := c.Now(); n != (HLC{5000, 0}) {
		t.Fatalf("Now = %v, want 5000.0", n)
	}
	// Too far ahead: refused, clock unchanged.
	if _, err := c.Update(HLC{Wall: now + int64(time.Second)}); !errors.Is(err, ErrClockOffset) {
		t.Fatalf("Update(far ahead) = %v, want ErrClockOffset", err)
	}
	if n := c.Now(); n != (HLC{5000, 1}) {
		t.Fatalf("Now after refused Update = %v, want 5000.1", n)
	}
	h, err := ParseHLC(HLC{Wall: 12, Logical: 3}.String())
	if err != nil || h != (HLC{12, 3}) {
		t.Fatalf("ParseHLC round trip = %v, %v", h, err)
	}
}

func BenchmarkAppendBinary(b *testing.B) {
	e := full()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = e.AppendBinary(buf[:0])
	}
}

func BenchmarkUnmarshalBinary(b *testing.B) {
	in, _ := full().MarshalBinary()
	var e Event
	b.ReportAllocs()
	for b.Loop() {
		if err := e.UnmarshalBinary(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	e := full()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = e.AppendJSON(buf[:0])
	}
}

func BenchmarkUnmarshalJSON(b *testing.B) {
	in, _ := full().MarshalJSON()
	var e Event
	b.ReportAllocs()
	for b.Loop() {
		if err := e.UnmarshalJSON(in); err != nil {
			b.Fatal(err)
		}
	}
}

func TestAppendBinaryAllocs(t *testing.T) {
	e := full()
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() { buf, _ = e.AppendBinary(buf[:0]) }); n != 0 {
		t.Errorf("AppendBinary allocs = %v, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { buf = e.AppendJSON(buf[:0]) }); n != 0 {
		t.Errorf("AppendJSON allocs = %v, want 0", n)
	}
}

func TestClockReserve(t *testing.T) {
	now := int64(1000)
	c := NewClockFunc(0, func() int64 { return now })
	first := c.Reserve(3)
	if first != (HLC{1000, 0}) {
		t.Fatalf("Reserve(3) = %v, want 1000.0", first)
	}
	if n := c.Now(); n != (HLC{1000, 3}) {
		t.Fatalf("Now after Reserve(3) = %v, want 1000.3 (after the reserved run)", n)
	}
	a, b := NewIDAt(now), NewIDAt(now)
	if string(b[:]) <= string(a[:]) || a.Time().UnixMilli() != 0 {
		t.Fatalf("NewIDAt: %s then %s (time %v)", a, b, a.Time())
	}
}

// TestClockReserveAt: a system clock takes the physical time from the
// caller's monotonic reading; a clock of the caller's reads its own.
func TestClockReserveAt(t *testing.T) {
	m := nanoclock.Mono()
	c := NewClock(0)
	hourAgo := nanoclock.WallAt(m - int64(time.Hour))
	if got := c.ReserveAt(2, m-int64(time.Hour)); got != (HLC{hourAgo, 0}) {
		t.Fatalf("ReserveAt(2, an hour-old reading) = %v, want %d.0", got, hourAgo)
	}
	if got := c.ReserveAt(1, m-2*int64(time.Hour)); got != (HLC{hourAgo, 2}) {
		t.Fatalf("ReserveAt with an older reading = %v, want %d.2 (never backwards)", got, hourAgo)
	}
	f := NewClockFunc(0, func() int64 { return 1000 })
	if got := f.ReserveAt(1, m); got != (HLC{1000, 0}) {
		t.Fatalf("ReserveAt on a NewClockFunc clock = %v, want 1000.0 (its own clock)", got)
	}
}

// TestBinarySizeBound: the bound holds with every field at its longest
// varint and is not far above the encoding.
func TestBinarySizeBound(t *testing.T) {
	e := full()
	e.Seq, e.HLC.Logical = ^uint64(0), ^uint32(0)
	e.Context.Known = HasPID | HasTID | HasUID | HasGID | HasInode | HasSize | HasBytes | HasOffset | HasLength | HasMode
	e.Context.Inode, e.Context.Size, e.Context.Bytes = ^uint64(0), -1<<63, -1<<63
	e.Context.Offset, e.Context.Length, e.Context.PID, e.Context.TID = -1<<63, -1<<63, -1<<31, -1<<31
	e.Context.UID, e.Context.GID, e.Context.Mode = ^uint32(0), ^uint32(0), ^uint32(0)
	for _, ev := range []*Event{{}, full(), e} {
		b, _ := ev.MarshalBinary()
		if bound := ev.BinarySizeBound(); len(b) > bound || bound-len(b) > 512 {
			t.Errorf("encoding %d bytes, bound %d: want len <= bound <= len+512", len(b), bound)
		}
	}
}
