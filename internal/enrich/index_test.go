package enrich

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestIndexLog: entries survive a reopen; a torn last record is dropped
// and the records before it kept.
func TestIndexLog(t *testing.T) {
	dir := t.TempDir()
	ix, err := openIndex(dir, 100)
	if err != nil {
		t.Fatal(err)
	}
	a := Facts{Hash: "00ff", Size: 3, Mime: "text/plain", Entropy: 1.585}
	b := Facts{Hash: "aa", Size: 1 << 40, Mime: "application/pdf", Entropy: 7.999}
	ix.swap("a", a)
	ix.swap("d/b", b)
	ix.swap("d/c", a)
	ix.forget("d/c", false)
	ix.move("d", "e")
	if err := ix.close(); err != nil {
		t.Fatal(err)
	}
	// A torn record after the good ones.
	p := filepath.Join(dir, indexFile)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	rec := appendRecord(nil, opSet, "torn", a)
	f.Write(rec[:len(rec)-3])
	f.Close()

	ix, err = openIndex(dir, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.close()
	want := map[string]Facts{"a": a, "e/b": b}
	if diff := cmp.Diff(want, ix.m); diff != "" {
		t.Errorf("reopened index (-want +got):\n%s", diff)
	}
}

// TestIndexBound: the index never holds more than its bound.
func TestIndexBound(t *testing.T) {
	ix, err := openIndex("", 10)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		ix.swap(string(rune('a'+i%26))+string(rune('a'+i/26)), Facts{Hash: "1"})
	}
	if n := ix.len(); n != 10 {
		t.Errorf("len = %d, want 10", n)
	}
}

// FuzzDecodeIndex: the index file is read back after crashes, so any
// bytes must decode without panicking, and what decodes must encode back
// to the same bytes.
func FuzzDecodeIndex(f *testing.F) {
	good := []byte(indexMagic)
	good = appendRecord(good, opSet, "a/b", Facts{Hash: "abcd", Size: 10, Mime: "text/plain", Entropy: 4.5})
	good = appendRecord(good, opDelete, "a/b", Facts{})
	f.Add(good)
	f.Add([]byte(indexMagic))
	f.Add([]byte("garbage"))
	f.Add(good[:len(good)-2])
	f.Fuzz(func(t *testing.T, data []byte) {
		var re []byte
		re = append(re, indexMagic...)
		n := decodeIndex(data, func(op byte, rel string, fa Facts) {
			re = appendRecord(re, op, rel, fa)
		})
		if n > len(data) {
			t.Fatalf("decodeIndex = %d, beyond %d bytes", n, len(data))
		}
		if n >= len(indexMagic) && string(re) != string(data[:n]) {
			t.Fatalf("re-encoding differs from the %d valid bytes", n)
		}
	})
}
