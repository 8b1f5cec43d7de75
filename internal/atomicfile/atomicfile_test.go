package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "cursor")
	for _, want := range []string{"first", "second, longer"} {
		if err := Write(p, []byte(want), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != want {
			t.Fatalf("after Write(%q): %q, %v", want, got, err)
		}
	}
	if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, %v; want 0600", st.Mode().Perm(), err)
	}
	if _, err := os.Stat(p + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left: %v", err)
	}
	// A failed write leaves the old content and no temporary file.
	if err := Write(filepath.Join(dir, "missing", "x"), []byte("y"), 0o600); err == nil {
		t.Error("Write into a missing directory succeeded")
	}
	if err := os.Mkdir(p+".tmp", 0o755); err != nil { // the temporary name is taken
		t.Fatal(err)
	}
	if err := Write(p, []byte("third"), 0o600); err == nil {
		t.Error("Write with its temporary name taken succeeded")
	}
	if got, _ := os.ReadFile(p); string(got) != "second, longer" {
		t.Errorf("a failed Write changed the file: %q", got)
	}
}
