package client

import (
	"encoding/json"
	"slices"
	"testing"
)

func TestParseSeqs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []uint64
		ok   bool
	}{
		{`{"seqs":[1]}` + "\n", []uint64{1}, true},
		{`{"seqs":[1,2,18446744073709551615]}`, []uint64{1, 2, 18446744073709551615}, true},
		{`{"seqs":[]}`, []uint64{}, true},
		{`{"seqs":[1,]}`, nil, false},
		{`{"seqs":[,1]}`, nil, false},
		{`{"seqs":[01]}`, nil, false},
		{`{"seqs":[+1]}`, nil, false},
		{`{"seqs":[-1]}`, nil, false},
		{`{"seqs":[18446744073709551616]}`, nil, false},
		{`{"seqs":[1 ]}`, nil, false},
		{`{"seqs":[1],"x":2}`, nil, false},
		{`{"seqs": [1]}`, nil, false},
		{``, nil, false},
	} {
		got, ok := parseSeqs([]byte(tc.in))
		if ok != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("parseSeqs(%q) = %v, %v, want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// FuzzParseSeqs: whatever the fast path accepts, encoding/json decodes to
// the same seqs.
func FuzzParseSeqs(f *testing.F) {
	for _, s := range []string{`{"seqs":[1,2,3]}` + "\n", `{"seqs":[]}`, `{"seqs":[0]}`, `{"seqs":[1,]}`, `{"seqs":[1e3]}`, `{"seqs":[18446744073709551615]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := parseSeqs(b)
		if !ok {
			return
		}
		var out struct {
			Seqs []uint64 `json:"seqs"`
		}
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("parseSeqs(%q) = %v, but encoding/json refuses it: %v", b, got, err)
		}
		if !slices.Equal(got, out.Seqs) || (got == nil) != (out.Seqs == nil) {
			t.Fatalf("parseSeqs(%q) = %v, encoding/json %v", b, got, out.Seqs)
		}
	})
}
