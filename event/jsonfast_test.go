package event

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fastSeeds are objects in the fast path's shape (the first fastTaken),
// then near misses that must go to the general decoder.
const fastTaken = 7

var fastSeeds = []string{
	// The Go SDK's shape (AppendJSON).
	`{"specversion":"1.0","id":"01JD8X2C4M9Q7R5T3V1W0YZABC","source":"bench","type":"bench.net","subject":"/data/file.txt","priority":"normal","datacontenttype":"application/json","data":{"pad":"xxxxxxxx"}}`,
	`{"specversion":"1.0","id":"1","type":"bench.ingest","source":"bench","subject":"/data/file.txt","data":{"n":1}}`,
	`{"specversion":"1.0","id":"u-1","source":"s","type":"a","time":"2026-12-05T11:00:00.123456789+01:00","priority":"high","data":null}`,
	`{"type":"a","specversion":"1.0","source":"s","id":"00000000000000000000000000"}`, // a zero ULID is a SourceID
	`{"specversion":"1.0","id":"x","source":"s","type":"a","data":[true,false,null,-0.5e+3,{},[],"",{"k":[{"z":1}]}]}`,
	`{"specversion":"1.0","id":"x","source":"s","type":"a","seq":7,"pid":-7,"size":-9223372036854775808,"bytes":0,"rescan":false}`,
	`{"specversion":"1.0","id":"x","source":"s","type":"a"}x`,                   // taken; the caller refuses what follows
	`{"specversion":"1.0","id":"x","source":"s","type":"a","subject":"\u0001"}`, // an escape: general
	`{"specversion":"1.0","id":"x","source":"s","type":"a","subject":"é"}`,      // not ASCII: general
	`{"specversion":"1.0","id":"x","source":"s","type":"a","type":"b"}`,         // repeated key: general
	`{"specversion":"1.0", "id":"x","source":"s","type":"a"}`,                   // white space: general
	`{"specversion":"1.1","id":"x","source":"s","type":"a"}`,                    // refused by general
	`{"specversion":"1.0","id":"","source":"s","type":"a"}`,
	`{"specversion":"1.0","id":"x","source":"","type":"a"}`,
	`{"specversion":"1.0","id":"x","source":"s","type":""}`,
	`{"specversion":"1.0","id":"x","source":"s"}`,
	`{"specversion":"1.0","id":"x","type":"a"}`,
	`{"specversion":"1.0","id":"x","source":"s","type":"a","priority":"urgent"}`,
	`{"specversion":"1.0","id":"x","source":"s","type":"a","time":"yesterday"}`,
	`{"specversion":"1.0","id":"x","source":"s","type":"a","time":"0001-01-01T00:00:00Z"}`,
	`{"specversion":"1.0","id":"x","source":"s","type":"a","data":{"a":}`,
	`{"specversion":"1.0","id":"x","source":"s","type":"a","data":1,"data_base64":"AA=="}`,
	`{"specversion":"1.0","id":"x","source":"s","type":"a","tenant":"t"}`,
	`{"specversion":"1.0","id":"x","source":"s","type":"a"`,
	`{"specversion":"1.0","id":"x","source":"s","type":"a\x7f"}`,
	`{}`,
	`{"":1}`,
	`{"specversion":"1.0","id":"x","source":"s","type":"a","data":"text \u00e9"}`, // an escape in data: general
	`{"specversion":"1.0","id":"x","source":"s","type":"a","data":{"k":"\n"}}`,    // an escape in data: general
	`{"specversion":"1.0","id":"x","source":"s","type":"a","data":{"k":01}}`,      // refused by general
	`{"specversion":"1.0","id":"x","source":"s","type":"a","data":{"k" :1}}`,      // white space in data: general
	`{"specversion":"1.0","id":"x","source":"s","type":"a","data":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`,
	`{"specversion":"1.0","id":"x","source":"s","type":"a","data":tru}`,
	`{"specversion":"1.0","id":"x","source":"s","type":"a","seq":-1}`,
	`{"specversion":"1.0","id":"x","source":"s","type":"a","seq":"7"}`,
	`{"specversion":"1.0","id":"x","source":"s","type":"a","seq":07}`,
	`{"specversion":"1.0","id":"x","source":"s","type":"a","seq":1.0}`,
	`{"specversion":"1.0","id":"x","source":"s","type":"a","seq":1e3}`,
	`{"specversion":"1.0","id":"x","source":"s","type":"a","seq":18446744073709551616}`,
	`{"specversion":"1.0","id":"x","source":"s","type":"a","uid":4294967296}`,
	`{"specversion":"1.0","id":"x","source":"s","type":"a","pid":2147483648}`,
	`{"specversion":"1.0","id":"x","source":"s","type":"a","size":-9223372036854775809}`,
	`{"specversion":"1.0","id":"x","source":"s","type":"a","offset":9223372036854775808}`,
	`{"specversion":"1.0","id":"x","source":"s","type":"a","rescan":truex}`,
	`{"specversion":"1.0","id":"x","source":"s","type":"a","rescan":1}`,
	`{"specversion":"1.0","id":"x","source":"s","type":"a","hlc":"x"}`,
	`{"specversion":"1.0","id":"x","source":"s","type":"a","boundary":"nowhere"}`,
	`{"specversion":"1.0","id":"x","source":"s","type":"a","boundaries":"fuse,nowhere"}`,
	`{"specversion":"1.0","id":"x","source":"s","type":"a","data":{"a":1,}}`,
}

// sameDecoding fails unless the fast path (decodeAt) and the general
// decoder (decodeObject alone) agree on in: the same error, or the same
// event.
func sameDecoding(t *testing.T, in []byte, strict bool) {
	t.Helper()
	var fast, general Event
	ferr := fast.unmarshalWith(in, strict, true)
	gerr := general.unmarshalWith(in, strict, false)
	if fmt.Sprint(ferr) != fmt.Sprint(gerr) {
		t.Fatalf("decode %q: fast path error %v, general %v", in, ferr, gerr)
	}
	if diff := cmp.Diff(&general, &fast, cmpEvents); ferr == nil && diff != "" {
		t.Fatalf("decode %q (-general +fast):\n%s", in, diff)
	}
	bin := append(append([]byte("[ "), in...), ",\n"...)
	bin = append(append(bin, in...), ']')
	fevs, ferr := parseJSONBatch(bin, true)
	gevs, gerr := parseJSONBatch(bin, false)
	if fmt.Sprint(ferr) != fmt.Sprint(gerr) {
		t.Fatalf("batch %q: fast path error %v, general %v", bin, ferr, gerr)
	}
	if diff := cmp.Diff(gevs, fevs, cmpEvents); ferr == nil && diff != "" {
		t.Fatalf("batch %q (-general +fast):\n%s", bin, diff)
	}
}

func TestDecodeFastAgrees(t *testing.T) {
	for _, s := range append(fastSeeds, structuredSeeds...) {
		for _, strict := range []bool{true, false} {
			sameDecoding(t, []byte(s), strict)
		}
	}
}

// TestDecodeFastTaken: what the SDK writes (AppendJSON of events without
// extensions or process context) goes the fast path; the near misses of
// fastSeeds do not.
func TestDecodeFastTaken(t *testing.T) {
	at := time.Date(2026, 12, 5, 11, 0, 0, 123, time.UTC)
	for _, e := range []*Event{
		{ID: NewID(), Source: "bench", Type: "bench.net", Subject: "/data/file.txt", DataContentType: "application/json", Data: []byte(`{"pad":"x"}`)},
		{SourceID: "order-7", Source: "app://shop", Type: "shop.order.Created", Time: at, Priority: PriorityHigh, Data: []byte(`[1,2,{"a":null}]`)},
		{ID: NewID(), Source: "s", Type: "t"},
		withoutAttrs(full()), // what an SSE stream carries
	} {
		in := e.AppendJSON(nil)
		var got Event
		s := scanner{b: in}
		if !got.decodeFast(&s, true) {
			t.Errorf("decodeFast(%s) = false, want true", in)
			continue
		}
		if s.i != len(in) {
			t.Errorf("decodeFast(%s) stopped at %d of %d", in, s.i, len(in))
		}
		if diff := cmp.Diff(e, &got, cmpEvents); diff != "" {
			t.Errorf("decodeFast(%s) (-want +got):\n%s", in, diff)
		}
	}
	for _, in := range fastSeeds[fastTaken:] {
		var got Event
		s := scanner{b: []byte(in)}
		if got.decodeFast(&s, true) {
			t.Errorf("decodeFast(%s) = true, want the general decoder", in)
		}
		if s.i != 0 {
			t.Errorf("decodeFast(%s) moved the cursor to %d after giving up", in, s.i)
		}
	}
	for _, in := range fastSeeds[:fastTaken] {
		var got Event
		if s := (scanner{b: []byte(in)}); !got.decodeFast(&s, true) {
			t.Errorf("decodeFast(%s) = false, want true", in)
		}
	}
}

// FuzzJSONFast is a differential fuzz test: for any input, the fast path
// of structured and batch decoding agrees with the general decoder (the
// same error or the same events).
func FuzzJSONFast(f *testing.F) {
	for _, s := range fastSeeds {
		f.Add([]byte(s), true)
	}
	for _, s := range structuredSeeds {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, in []byte, strict bool) {
		sameDecoding(t, in, strict)
	})
}

// TestAppendJSONCheckedRefuses: each string AppendJSONChecked checks while
// writing it is refused with the field named, and b is returned as given.
func TestAppendJSONCheckedRefuses(t *testing.T) {
	for _, tc := range []struct {
		field string
		set   func(e *Event)
	}{
		{"id", func(e *Event) { e.SourceID = "a\xffb" }},
		{"source", func(e *Event) { e.Source = "\xed\xa0\x80" }}, // a UTF-8 surrogate
		{"type", func(e *Event) { e.Type = "a.\xc3" }},
		{"subject", func(e *Event) { e.Subject = "/x/\xff" }},
		{"datacontenttype", func(e *Event) { e.DataContentType = "\xfe" }},
		{"comm", func(e *Event) { e.Context.Comm = "\x80" }},
		{"exe", func(e *Event) { e.Context.Exe = "/bin/\xff" }},
		{"oldpath", func(e *Event) { e.Context.OldPath = "\xff" }},
		{"target", func(e *Event) { e.Context.Target = "\xff" }},
		{"attrs", func(e *Event) { e.Attrs = []Attr{{Key: "k\xff", Value: "v"}} }},
		{"tenant", func(e *Event) { e.Attrs = []Attr{{Key: "tenant", Value: "\xff"}} }},
		{"data", func(e *Event) { e.Data = []byte(`{"a":`) }},
		{"subject", func(e *Event) { e.Subject = "\xff"; e.Data = []byte(`{"a":`) }}, // strings first, as checkText
	} {
		e := &Event{SourceID: "1", Source: "s", Type: "a", Data: []byte(`{"ok":true}`)}
		tc.set(e)
		b := []byte("prefix")
		got, err := e.AppendJSONChecked(b)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("AppendJSONChecked with a bad %s: error %v, want a *FieldError for %q", tc.field, err, tc.field)
		}
		if string(got) != "prefix" {
			t.Errorf("AppendJSONChecked with a bad %s returned %q, want b as given", tc.field, got)
		}
	}
}

// withoutAttrs returns e without extension attributes (which the fast
// path leaves to the general decoder) and with a subject of plain ASCII.
func withoutAttrs(e *Event) *Event {
	e.Attrs = nil
	e.Subject = "/data/notes/a.md"
	return e
}

// TestDecodeFastAllocs: the fast path allocates no more than the general
// decoder, for one event (what a stream decodes) and for a batch.
func TestDecodeFastAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts")
	}
	one := withoutAttrs(full()).AppendJSON(nil)
	batch := []byte("[" + string(one) + "," + string(one) + "]")
	for _, tc := range []struct {
		name string
		run  func(fast bool)
	}{
		{"UnmarshalJSON", func(fast bool) {
			var e Event
			if err := e.unmarshalWith(one, true, fast); err != nil {
				t.Fatal(err)
			}
		}},
		{"ParseJSONBatch", func(fast bool) {
			if _, err := parseJSONBatch(batch, fast); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		fast := testing.AllocsPerRun(50, func() { tc.run(true) })
		general := testing.AllocsPerRun(50, func() { tc.run(false) })
		if fast > general {
			t.Errorf("%s: the fast path allocates %.1f objects, the general decoder %.1f", tc.name, fast, general)
		}
	}
}
