package event

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseBinaryMode(t *testing.T) {
	base := func(extra map[string][]string) map[string][]string {
		h := map[string][]string{
			"Ce-Specversion": {"1.0"}, "Ce-Id": {"42"}, "Ce-Source": {"app://t"}, "Ce-Type": {"t.x"},
		}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	for _, tc := range []struct {
		name   string
		header map[string][]string
		body   string
		want   *Event // nil: an error naming field
		field  string
	}{
		{"json body compacted", base(map[string][]string{"Content-Type": {"application/json"}}), "{\n \"a\": [1, 2]\r\n}\n",
			&Event{SourceID: "42", Source: "app://t", Type: "t.x", DataContentType: "application/json", Data: []byte(`{"a":[1,2]}`)}, ""},
		{"u2028 escaped", base(map[string][]string{"Content-Type": {"text/json"}}), "\"a\u2028b\"",
			&Event{SourceID: "42", Source: "app://t", Type: "t.x", DataContentType: "text/json", Data: []byte(`"a\u2028b"`)}, ""},
		{"null body is no data", base(map[string][]string{"Content-Type": {"application/json"}}), " null\n",
			&Event{SourceID: "42", Source: "app://t", Type: "t.x", DataContentType: "application/json"}, ""},
		{"text body opaque", base(map[string][]string{"Content-Type": {"text/plain"}}), "a\nb\n",
			&Event{SourceID: "42", Source: "app://t", Type: "t.x", DataContentType: "text/plain", Flags: FlagDataBinary, Data: []byte("a\nb\n")}, ""},
		{"no content type opaque", base(nil), "{",
			&Event{SourceID: "42", Source: "app://t", Type: "t.x", Flags: FlagDataBinary, Data: []byte("{")}, ""},
		{"percent and quotes", base(map[string][]string{"Ce-Subject": {"/d/caf%C3%a9%20x"}, "ce-tenant": {`"a \"q\""`}}), "",
			&Event{SourceID: "42", Source: "app://t", Type: "t.x", Subject: "/d/café x", Attrs: []Attr{{"tenant", `a "q"`}}}, ""},
		{"extensions sorted", base(map[string][]string{"Ce-Zz": {"1"}, "Ce-Aa": {"2"}}), "",
			&Event{SourceID: "42", Source: "app://t", Type: "t.x", Attrs: []Attr{{"aa", "2"}, {"zz", "1"}}}, ""},
		{"json claimed not json", base(map[string][]string{"Content-Type": {"application/json"}}), "{\"a\":1}\n{", nil, "data"},
		{"json claimed with bad param", base(map[string][]string{"Content-Type": {"application/json; charset"}}), "nope", nil, "data"},
		{"+json claimed", base(map[string][]string{"Content-Type": {"Application/Vnd.X+JSON"}}), "nope", nil, "data"},
		{"whitespace body", base(map[string][]string{"Content-Type": {"application/json"}}), "\n", nil, "data"},
		{"invalid utf-8 body", base(map[string][]string{"Content-Type": {"application/json"}}), "\"\xff\"", nil, "data"},
		{"invalid utf-8 header", base(map[string][]string{"Ce-Subject": {"%c3"}}), "", nil, "subject"},
		{"raw invalid utf-8 header", base(map[string][]string{"Ce-Subject": {"\xff"}}), "", nil, "subject"},
		{"bad percent", base(map[string][]string{"Ce-Subject": {"%4"}}), "", nil, "subject"},
		{"twice", base(map[string][]string{"Ce-Tenant": {"a", "b"}}), "", nil, "tenant"},
		{"twice by case", base(map[string][]string{"Ce-Tenant": {"a"}, "ce-tenant": {"b"}}), "", nil, "tenant"},
		{"ce-data", base(map[string][]string{"Ce-Data": {"x"}}), "", nil, "data"},
		{"ce-datacontenttype", base(map[string][]string{"Ce-Datacontenttype": {"x"}}), "", nil, "datacontenttype"},
		{"no id", map[string][]string{"Ce-Specversion": {"1.0"}, "Ce-Source": {"s"}, "Ce-Type": {"t"}}, "", nil, "id"},
		{"no source", map[string][]string{"Ce-Specversion": {"1.0"}, "Ce-Id": {"1"}, "Ce-Type": {"t"}}, "", nil, "source"},
		{"no specversion", map[string][]string{"Ce-Id": {"1"}, "Ce-Source": {"s"}, "Ce-Type": {"t"}}, "", nil, "specversion"},
	} {
		got, err := ParseBinaryMode(tc.header, []byte(tc.body))
		if tc.want == nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Errorf("%s: ParseBinaryMode = %v, %v; want a FieldError on %s", tc.name, got, err, tc.field)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: ParseBinaryMode: %v", tc.name, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got, cmpEvents); diff != "" {
			t.Errorf("%s: (-want +got):\n%s", tc.name, diff)
		}
	}
}

// The encoder keeps the framing whatever Data holds.
func TestAppendJSONFraming(t *testing.T) {
	for _, tc := range []struct {
		name  string
		e     Event
		frag  string // must appear in the output
		dataB bool   // written as data_base64
	}{
		{"final newline", Event{Data: []byte("{\"a\":1}\n")}, `"data":{"a":1}}`, false},
		{"crlf inside", Event{Data: []byte("[1,\r\n2]")}, `"data":[1,2]`, false},
		{"u2028 in data", Event{Data: []byte("\"\u2028\u2029\"")}, `"data":"\u2028\u2029"`, false},
		{"space in string kept", Event{Data: []byte(`"a b"`)}, `"data":"a b"`, false},
		{"not json", Event{Data: []byte("{\"a\":\n")}, `"data_base64":"eyJhIjoK"`, true},
		{"invalid utf-8", Event{Data: []byte("\"\xff\"\n")}, `"data_base64":"Iv8iCg=="`, true},
		{"strings", Event{Subject: "a\nb\u2028c\rd", Attrs: []Attr{{"k", "\u2029"}}}, `"subject":"a\nb\u2028c\rd","priority":"normal","k":"\u2029"`, false},
	} {
		e := tc.e
		e.Type, e.Source, e.SourceID = "t", "s", "1"
		out := e.AppendJSON(nil)
		checkFramed(t, out)
		if !contains(out, tc.frag) {
			t.Errorf("%s: AppendJSON = %s, want it to hold %s", tc.name, out, tc.frag)
		}
		var back Event
		if err := back.UnmarshalJSON(out); err != nil {
			t.Errorf("%s: %s does not decode: %v", tc.name, out, err)
		} else if (back.Flags&FlagDataBinary != 0) != tc.dataB {
			t.Errorf("%s: decoded binary flag %v, want %v", tc.name, back.Flags&FlagDataBinary != 0, tc.dataB)
		}
		if _, err := e.MarshalJSON(); (err != nil) != tc.dataB {
			t.Errorf("%s: MarshalJSON error %v, want one only for data that is not JSON", tc.name, err)
		}
	}
}

func contains(b []byte, s string) bool { return strings.Contains(string(b), s) }
