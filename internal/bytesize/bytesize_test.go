package bytesize

import (
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "4096": 4096, "64MiB": 64 << 20, " 1 GB ": 1e9, "2TiB": 2 << 40, "10KB": 10e3, "7B": 7, "3 KiB": 3 << 10,
	} {
		if got, err := Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5GiB", "GiB", "12XB", "8700000000GiB", "9223372036854775808"} {
		if got, err := Parse(in); !errors.Is(err, ErrSize) {
			t.Errorf("Parse(%q) = %d, %v; want ErrSize", in, got, err)
		}
	}
}

func TestString(t *testing.T) {
	for s, want := range map[Size]string{0: "0", 1023: "1023", 1024: "1KiB", 1536: "1536", 64 << 20: "64MiB", 3 << 40: "3TiB"} {
		if got := s.String(); got != want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(s), got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"64MiB", "1GB", "4096", "-1", "8700000000GiB", " 2 TiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		n, err := Parse(in)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("Parse(%q) = %d", in, n)
		}
		// What String writes parses back to the same size.
		if back, err := Parse(Size(n).String()); err != nil || back != n {
			t.Fatalf("Parse(%q) = %d; its String %q parses to %d, %v", in, n, Size(n).String(), back, err)
		}
	})
}
