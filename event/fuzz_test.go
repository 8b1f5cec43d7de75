package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// checkFramed fails unless out, the structured JSON of an event, is valid
// JSON on one line: no line feed, carriage return, U+2028 or U+2029.
func checkFramed(t *testing.T, out []byte) {
	t.Helper()
	if i := bytes.IndexAny(out, "\r\n\u2028\u2029"); i >= 0 {
		t.Fatalf("structured JSON has a line break at byte %d: %q", i, out)
	}
	if !json.Valid(out) {
		t.Fatalf("structured JSON is not valid: %q", out)
	}
}

// FuzzBinary: no input panics the decoder, whatever decodes re-encodes to
// bytes that decode to the same event, and BinarySizeBound bounds the
// encoding. Whatever a journal holds, its structured JSON stays framed.
func FuzzBinary(f *testing.F) {
	for _, e := range []*Event{
		full(), {}, {Type: "x", Flags: FlagDataBinary, Data: []byte{1}},
		{Type: "x", Data: []byte("{\"a\":\n1}\n")},            // stored raw by an old daemon
		{Type: "x", Data: []byte("{\"a\":\n")},                // not JSON at all
		{Type: "x", Data: []byte("\"\u2028\xff\"\r\n")},       // U+2028 and invalid UTF-8
		{Type: "x\ny", Source: "a\u2029b", Subject: "\xff\n"}, // strings no decoder accepts
	} {
		b, _ := e.MarshalBinary()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var e Event
		if e.UnmarshalBinary(in) != nil {
			return
		}
		out, _ := e.MarshalBinary()
		if len(out) > e.BinarySizeBound() {
			t.Fatalf("encoding is %d bytes, BinarySizeBound %d", len(out), e.BinarySizeBound())
		}
		var back Event
		if err := back.UnmarshalBinary(out); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if diff := cmp.Diff(&e, &back, cmpEvents); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
		js := e.AppendJSON(nil)
		checkFramed(t, js)
		// An event that Validate accepts decodes back, unless it holds
		// what no daemon writes: a negative HLC or a time outside the
		// years the decoder accepts.
		if e.Validate(Limits{MaxData: len(e.Data) + 1, MaxString: 1 << 30, MaxAttrs: 1 << 30}) == nil && e.Source != "" &&
			e.HLC.Wall >= 0 && (e.Time.IsZero() || e.Time.Year() >= 1678 && e.Time.Year() <= 2261) {
			var dec Event
			if err := dec.UnmarshalJSON(js); err != nil {
				t.Fatalf("a valid event's JSON does not decode: %v\n%s", err, js)
			}
		}
	})
}

// structuredSeeds are structured-mode inputs for the JSON fuzz targets:
// line breaks inside and around data, U+2028/U+2029, escapes, and the
// invalid Unicode and missing attributes the decoder refuses.
var structuredSeeds = []string{
	`{"specversion":"1.0","type":"a.b","id":"x","source":"s","ext":5,"flag":true,"data":"text"}`,
	`{"specversion":"1.0","type":"a","id":"1","source":"s","subject":"\ud83d\ude00 \u00e9\n","data":[1,{"x":null}],"k":-1.5e3}`,
	"{\"specversion\":\"1.0\",\"type\":\"a\",\"id\":\"1\",\"source\":\"s\",\"data\":{\n\"a\": [1,\r\n2]\r\n}\r\n}\n",
	"{\"specversion\":\"1.0\",\"type\":\"a\",\"id\":\"1\",\"source\":\"s\",\"data\":\"x\u2028y\u2029z\",\"tenant\":\"\u2028\"}",
	"{\"specversion\":\"1.0\",\"type\":\"a\",\"id\":\"1\",\"source\":\"s\",\"ext\":[\"\u2029\", {\"k\" : 1}]}",
	`{"specversion":"1.0","type":"a","id":"1","source":"s","data":"\u2028\\u2028\\n\\r"}`,
	"{\"specversion\":\"1.0\",\"type\":\"a\",\"id\":\"1\",\"source\":\"s\",\"subject\":\"\xff\"}",
	`{"specversion":"1.0","type":"a","id":"1","source":"s","data":"\ud800"}`,
	`{"specversion":"1.0","type":"a","id":"1","source":"s","data":"\x"}`,
	`{"specversion":"1.0","type":"a","source":"s"}`,
	`{"specversion":"1.0","type":"a","id":"1"}`,
}

// FuzzJSON: no input panics the CloudEvents decoder, whatever decodes
// re-encodes to JSON that decodes to the same event, and that JSON is
// always on one line.
func FuzzJSON(f *testing.F) {
	for _, e := range []*Event{full(), {Type: "x", Source: "s", SourceID: "1"}, {Type: "x", Source: "s", SourceID: "1", Flags: FlagDataBinary, Data: []byte{0, 1}}} {
		b, _ := e.MarshalJSON()
		f.Add(b)
	}
	for _, s := range structuredSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var e Event
		if e.UnmarshalJSON(in) != nil {
			return
		}
		// Differential check against encoding/json: what the scanner
		// accepts is valid JSON, and string fields decode the same.
		if !json.Valid(in) {
			t.Fatalf("accepted invalid JSON %q", in)
		}
		var ref map[string]any
		if err := json.Unmarshal(in, &ref); err != nil {
			t.Fatalf("encoding/json rejects %q: %v", in, err)
		}
		for k, got := range map[string]string{"type": e.Type, "subject": e.Subject, "source": e.Source} {
			if want, ok := ref[k].(string); ok && want != got {
				t.Fatalf("%s = %q, encoding/json says %q", k, got, want)
			}
		}
		if e.SourceID == "" && e.ID.IsZero() || e.Source == "" {
			t.Fatalf("decoded without id or source: %+v", e)
		}
		checkDecoded(t, &e)
	})
}

// checkDecoded checks what holds for every event a decoder accepted: its
// strings and data are valid Unicode text, its data is compact, and its
// structured JSON is framed and decodes to the same event.
func checkDecoded(t *testing.T, e *Event) {
	t.Helper()
	if _, err := e.checkText(); err != nil {
		t.Fatalf("decoded event fails its own text check: %v", err)
	}
	// What makes ValidateDecoded safe: on a decoded event it decides as
	// Validate does.
	for _, lim := range []Limits{DefaultLimits, {MaxData: 8, MaxString: 8, MaxAttrs: 1}} {
		if v, d := e.Validate(lim), e.ValidateDecoded(lim); fmt.Sprint(v) != fmt.Sprint(d) {
			t.Fatalf("Validate says %v, ValidateDecoded %v", v, d)
		}
	}
	// isCompact is a conservative fast check (white space inside strings
	// fails it); compact means appendCompact leaves the data alone.
	if e.Flags&FlagDataBinary == 0 && len(e.Data) > 0 && !bytes.Equal(appendCompact(nil, e.Data), e.Data) {
		t.Fatalf("decoded data is not compact: %q", e.Data)
	}
	out := e.AppendJSON(nil)
	checkFramed(t, out)
	var back Event
	if err := back.UnmarshalJSON(out); err != nil {
		t.Fatalf("re-decode %s: %v", out, err)
	}
	if diff := cmp.Diff(e, &back, cmpEvents); diff != "" {
		t.Fatalf("round trip via %s (-first +second):\n%s", out, diff)
	}
}

// FuzzJSONBatch: the batch decoder never panics, and every event it
// accepts satisfies what the single-event decoder guarantees.
func FuzzJSONBatch(f *testing.F) {
	f.Add([]byte(`[]`))
	f.Add([]byte("[" + strings.Join(structuredSeeds[:6], ",\n") + "]\n"))
	f.Add([]byte("[\r\n" + structuredSeeds[2] + "\r\n,\r\n" + structuredSeeds[6] + "]"))
	f.Add([]byte(`[{"specversion":"1.0","type":"a","source":"s","id":"1"},{"specversion":"1.0"}]`))
	f.Fuzz(func(t *testing.T, in []byte) {
		buf := bytes.Clone(in)
		evs, err := ParseJSONBatch(buf)
		if err != nil {
			return
		}
		if !json.Valid(in) {
			t.Fatalf("accepted invalid JSON %q", in)
		}
		// The events keep nothing of the input: overwriting it changes
		// none of them.
		want, err := ParseJSONBatch(in)
		if err != nil {
			t.Fatalf("second decode: %v", err)
		}
		for i := range buf {
			buf[i] = 'X'
		}
		if diff := cmp.Diff(want, evs, cmpEvents); diff != "" {
			t.Fatalf("events changed with their input (-want +got):\n%s", diff)
		}
		for _, e := range evs {
			checkDecoded(t, e)
		}
	})
}

// FuzzBinaryMode: the HTTP binary-mode decoder never panics; a JSON
// content type admits only a JSON body; what it accepts is framed. The
// fuzzer drives one attribute header's value, the content type and the
// body.
func FuzzBinaryMode(f *testing.F) {
	for _, s := range []struct{ attr, value, ctype, body string }{
		{"subject", "/data/a.md", "application/json", "{\"a\":1}\n"},
		{"subject", "%2Fdata%2F%E2%80%A8%0A", "application/json", "{\n \"a\": [1,\r\n 2]\r\n}\r\n"},
		{"tenant", `"quoted \" value"`, "application/vnd.x+json; charset=utf-8", "\"x\u2028y\u2029z\"\n"},
		{"tenant", "%ff", "application/json", "1"},
		{"subject", "%zz", "text/plain", "line 1\nline 2\r\n"},
		{"pid", "7", "application/json", "{\"a\":"},
		{"data", "x", "application/json", "\"\xff\""},
		{"id", "", "text/json", "null"},
		{"source", "semprop://host/kernel", "", "\x00\x01"},
	} {
		f.Add(s.attr, s.value, s.ctype, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, attr, value, ctype string, body []byte) {
		h := map[string][]string{
			"Ce-Specversion": {"1.0"}, "Ce-Id": {"1"}, "Ce-Source": {"app://fuzz"}, "Ce-Type": {"fuzz.binary"},
			"Ce-" + attr: {value},
		}
		if ctype != "" {
			h["Content-Type"] = []string{ctype}
		}
		e, err := ParseBinaryMode(h, body)
		if err != nil {
			return
		}
		if e.Flags&FlagDataBinary == 0 && len(body) > 0 && !json.Valid(body) {
			t.Fatalf("JSON content type %q admitted the body %q", ctype, body)
		}
		if len(e.Data) > 0 && e.Flags&FlagDataBinary != 0 && !bytes.Equal(e.Data, body) {
			t.Fatalf("opaque body changed: %q became %q", body, e.Data)
		}
		checkDecoded(t, e)
	})
}

// FuzzAppendJSON: whatever an event built in process holds (the encoder's
// input is not validated), its structured JSON is valid and on one line,
// and data that is one JSON value of valid text keeps its meaning.
func FuzzAppendJSON(f *testing.F) {
	f.Add("a.b", "/data/x", "v", []byte("{\"a\":\n1}\n"), false)
	f.Add("a\nb", "\u2028", "\xff\r", []byte("\"\u2029\"\r\n"), false)
	f.Add("a", "s", "v", []byte("{\"a\":\n"), false)
	f.Add("a", "s", "v", []byte("line\nline"), true)
	f.Fuzz(func(t *testing.T, typ, subject, value string, data []byte, binary bool) {
		e := &Event{SourceID: "1", Source: "app://fuzz", Type: typ, Subject: subject, Data: data}
		e.SetAttr("tenant", value)
		if binary {
			e.Flags |= FlagDataBinary
		}
		out := e.AppendJSON(nil)
		checkFramed(t, out)
		// AppendJSONChecked is MarshalJSON appending: the same refusals,
		// the same bytes, and b untouched when it refuses.
		checked, cerr := e.AppendJSONChecked([]byte("prefix"))
		marshaled, merr := e.MarshalJSON()
		// Checking while writing refuses what checkText, a separate
		// pass over every string, refuses, with its error.
		if _, terr := e.checkText(); fmt.Sprint(terr) != fmt.Sprint(cerr) {
			t.Fatalf("AppendJSONChecked error %v, checkText error %v", cerr, terr)
		}
		switch {
		case (cerr == nil) != (merr == nil):
			t.Fatalf("AppendJSONChecked error %v, MarshalJSON error %v", cerr, merr)
		case cerr != nil && string(checked) != "prefix":
			t.Fatalf("AppendJSONChecked refused (%v) but changed b to %q", cerr, checked)
		case cerr == nil && (string(checked) != "prefix"+string(out) || !bytes.Equal(marshaled, out)):
			t.Fatalf("AppendJSONChecked %q, MarshalJSON %q, AppendJSON %q: want the same encoding", checked, marshaled, out)
		}
		var ref struct {
			Data       json.RawMessage `json:"data"`
			DataBase64 []byte          `json:"data_base64"`
		}
		if err := json.Unmarshal(out, &ref); err != nil {
			t.Fatalf("encoding/json cannot read %q: %v", out, err)
		}
		if _, err := scanJSON(data); err == nil && !binary {
			var want, got any
			json.Unmarshal(data, &want)
			json.Unmarshal(ref.Data, &got)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("data changed meaning (-want +got):\n%s", diff)
			}
		} else if len(data) > 0 && !bytes.Equal(ref.DataBase64, data) {
			t.Fatalf("opaque data %q came out as %q", data, ref.DataBase64)
		}
	})
}
