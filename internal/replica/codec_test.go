package replica

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/semprop/semprop/event"
)

func sampleMessage() *message {
	return &message{
		From: "laptop", URL: "https://127.0.0.1:7400", Peers: []string{"https://127.0.0.1:7401"},
		Summary: VersionVector{"laptop": 9, "server": 4}, More: true,
		Changes: []Change{
			{Key: Key{"docs", "a/b.txt"}, Version: Version{File: File{Size: 12, MTime: 1700000000000000000, Hash: "xxh3:abcd", UID: 1000, Instance: "laptop", Seq: 9, HLC: event.HLC{Wall: 1700000000000000001, Logical: 2}}, Origin: "laptop", Counter: 9, VV: VersionVector{"laptop": 9, "server": 3}}},
			{Key: Key{"docs", "gone"}, Version: Version{File: File{Deleted: true, Instance: "server", Seq: 4}, Origin: "server", Counter: 4, VV: VersionVector{"server": 4}}},
		},
	}
}

func TestCodecRoundTrip(t *testing.T) {
	m := sampleMessage()
	got, err := open(m.seal())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(m, got, cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("round trip (-want +got):\n%s", diff)
	}
}

func TestDecodeRejects(t *testing.T) {
	good := sampleMessage().encode(nil)
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"magic", append([]byte{0}, good[1:]...)},
		{"truncated", good[:len(good)-3]},
		{"trailing", append(append([]byte{}, good...), 0)},
		{"huge count", []byte{codecMagic, codecVersion, 0, 0, 0xff, 0xff, 0xff, 0x0f}},
	} {
		if _, err := decode(tc.b); err == nil {
			t.Errorf("decode(%s) accepted", tc.name)
		}
	}
	bad := sampleMessage()
	bad.Changes[0].Key.Path = "../etc/passwd"
	if _, err := decode(bad.encode(nil)); err == nil {
		t.Errorf("decode accepted path %q", bad.Changes[0].Key.Path)
	}
	bad = sampleMessage()
	bad.Changes[0].VV = VersionVector{"server": 3}
	if _, err := decode(bad.encode(nil)); err == nil {
		t.Errorf("decode accepted a version whose vector lacks its own dot")
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(sampleMessage().encode(nil))
	f.Add((&message{}).encode(nil))
	f.Add([]byte{codecMagic, codecVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decode(b)
		if err != nil {
			return
		}
		// What decodes re-encodes to something that decodes the same.
		again, err := decode(m.encode(nil))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if diff := cmp.Diff(m, again, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("re-decode differs:\n%s", diff)
		}
	})
}

func FuzzParseVersionVector(f *testing.F) {
	for _, s := range []string{"", "a:1", "a:1,b:22", "a:0", "a:1,a:2", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVersionVector(s)
		if err != nil {
			return
		}
		w, err := ParseVersionVector(v.String())
		if err != nil || w.Compare(v) != Equal {
			t.Fatalf("ParseVersionVector(%q) = %v; again from %q = %v, %v", s, v, v.String(), w, err)
		}
	})
}
