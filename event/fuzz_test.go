package event

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzBinary: no input panics the decoder, whatever decodes re-encodes to
// bytes that decode to the same event, and BinarySizeBound bounds the
// encoding.
func FuzzBinary(f *testing.F) {
	for _, e := range []*Event{full(), {}, {Type: "x", Flags: FlagDataBinary, Data: []byte{1}}} {
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
	})
}

// FuzzJSON: no input panics the CloudEvents decoder, and whatever decodes
// re-encodes to JSON that decodes to the same event.
func FuzzJSON(f *testing.F) {
	for _, e := range []*Event{full(), {Type: "x", Source: "s"}, {Type: "x", Flags: FlagDataBinary, Data: []byte{0, 1}}} {
		b, _ := e.MarshalJSON()
		f.Add(b)
	}
	f.Add([]byte(`{"specversion":"1.0","type":"a.b","id":"x","ext":5,"flag":true,"data":"text"}`))
	f.Add([]byte(`{"specversion":"1.0","type":"a","subject":"\ud83d\ude00 \u00e9\n","data":[1,{"x":null}],"k":-1.5e3}`))
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
		out := e.AppendJSON(nil)
		var back Event
		if err := back.UnmarshalJSON(out); err != nil {
			t.Fatalf("re-decode %s: %v", out, err)
		}
		if diff := cmp.Diff(&e, &back, cmpEvents); diff != "" {
			t.Fatalf("round trip via %s (-first +second):\n%s", out, diff)
		}
	})
}
