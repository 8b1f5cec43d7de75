package event

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestBatchEventsOwnTheirMemory: the events of a batch share chunks, but
// none aliases the input or reaches into another event: an append to one
// event's Data leaves its neighbour alone.
func TestBatchEventsOwnTheirMemory(t *testing.T) {
	_, body := sdkBatch(3)
	in := bytes.Clone(body)
	evs, err := ParseJSONBatch(in)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		in[i] = '#'
	}
	for i, ev := range evs {
		if ev.Subject != "/data/file.txt" || ev.Type != "bench.net" || ev.Source != "bench" ||
			ev.DataContentType != "application/json" || !bytes.HasPrefix(ev.Data, []byte(`{"pad":"xx`)) {
			t.Fatalf("event %d changed with its input: %+v", i, ev)
		}
	}
	before := string(evs[1].Data)
	_ = append(evs[0].Data, "OVERWRITE"...)
	if string(evs[1].Data) != before {
		t.Fatalf("append to event 0's data changed event 1's: %q", evs[1].Data)
	}
}

// TestStringScanBoundaries: the 8-bytes-at-a-time paths of the string
// scanner and encoder agree with encoding/json wherever a character that
// needs care sits in a run of plain ones: each is put at every offset of
// strings of several lengths, decoded from encoding/json's encoding and
// encoded back.
func TestStringScanBoundaries(t *testing.T) {
	specials := []string{`"`, `\`, "\n", "\x01", "\x1f", "\x7f", " ", "é", "\u2028", "\u2029", "😀", "/"}
	for _, sp := range specials {
		for n := range 20 {
			for at := 0; at <= n; at++ {
				s := strings.Repeat("a", at) + sp + strings.Repeat("b", n-at)
				subject, _ := json.Marshal(s)
				in := `{"specversion":"1.0","id":"1","source":"s","type":"t","subject":` + string(subject) + `}`
				var e Event
				if err := e.UnmarshalJSON([]byte(in)); err != nil {
					t.Fatalf("UnmarshalJSON(%s): %v", in, err)
				}
				if e.Subject != s {
					t.Fatalf("UnmarshalJSON(%s): subject %q, want %q", in, e.Subject, s)
				}
				evs, err := ParseJSONBatch([]byte("[" + in + "]"))
				if err != nil || evs[0].Subject != s {
					t.Fatalf("ParseJSONBatch([%s]) = %v, %v: want subject %q", in, evs, err, s)
				}
				out := e.AppendJSON(nil)
				var back struct{ Subject string }
				if err := json.Unmarshal(out, &back); err != nil || back.Subject != s {
					t.Fatalf("AppendJSON wrote %s: encoding/json reads subject %q (%v), want %q", out, back.Subject, err, s)
				}
				checkFramed(t, out)
			}
		}
	}
	// Invalid UTF-8 next to plain runs: refused on input, replaced on output.
	for at := range 17 {
		s := strings.Repeat("a", at) + "\xff" + strings.Repeat("b", 16-at)
		in := `{"specversion":"1.0","id":"1","source":"s","type":"t","subject":"` + s + `"}`
		var e Event
		if err := e.UnmarshalJSON([]byte(in)); err == nil {
			t.Fatalf("UnmarshalJSON accepted invalid UTF-8 at offset %d", at)
		}
		e = Event{Type: "t", Subject: s}
		out := e.AppendJSON(nil)
		var back struct{ Subject string }
		if err := json.Unmarshal(out, &back); err != nil || back.Subject != strings.Replace(s, "\xff", "\ufffd", 1) {
			t.Fatalf("AppendJSON wrote %q for invalid UTF-8 at %d", out, at)
		}
	}
}

// TestAppendJSONChecked: the bytes of MarshalJSON, appended; a refusal
// leaves b as it was; no allocation when b has room.
func TestAppendJSONChecked(t *testing.T) {
	e := full()
	want, err := e.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.AppendJSONChecked([]byte("["))
	if err != nil || string(got) != "["+string(want) {
		t.Fatalf("AppendJSONChecked = %q, %v; want [ then %q", got, err, want)
	}
	for _, bad := range []*Event{
		{Type: "t", Subject: "\xff"},
		{Type: "t", Data: []byte("{not json")},
		{Type: "t", Attrs: []Attr{{Key: "k", Value: "\xfe"}}},
	} {
		b, err := bad.AppendJSONChecked([]byte("keep"))
		if err == nil || string(b) != "keep" {
			t.Errorf("AppendJSONChecked(%+v) = %q, %v: want an error and b unchanged", bad, b, err)
		}
		if _, merr := bad.MarshalJSON(); merr == nil || merr.Error() != err.Error() {
			t.Errorf("MarshalJSON error %v, AppendJSONChecked error %v: want the same", merr, err)
		}
	}
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() { buf, _ = e.AppendJSONChecked(buf[:0]) }); n != 0 {
		t.Errorf("AppendJSONChecked allocs = %v, want 0", n)
	}
}
