package filter

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRedactorHides(t *testing.T) {
	r, err := NewRedactor(RedactSpec{Rules: []RedactRule{
		{Field: "comm", Action: "mask"}, {Field: "path", Action: "hash", Segments: []int{-1}},
		{Field: "uid", Action: "hash"}, {Field: "attrs.tenant", Action: "drop"}, {Field: "data", Action: "drop"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"attrs.tenant", "comm", "data", "datacontenttype", "exe", "oldpath", "subject", "target", "uid"}
	if diff := cmp.Diff(want, r.Fields()); diff != "" {
		t.Errorf("Fields() mismatch (-want +got):\n%s", diff)
	}
	for field, want := range map[string]bool{
		"comm": true, "exe": true, "path": true, "subject": true, "oldpath": true, "target": true,
		"uid": true, "gid": false, "pid": false, "type": false, "size": false,
		"tenant": true, "attrs.tenant": true, `attrs["tenant"]`: true, "attrs[tenant]": true, "other": false,
		"data": true, "datacontenttype": true,
	} {
		if got := r.Hides(field); got != want {
			t.Errorf("Hides(%q) = %v, want %v", field, got, want)
		}
	}
	var nilR *Redactor
	if nilR.Hides("comm") || nilR.Fields() != nil {
		t.Errorf("a nil Redactor hides something")
	}
}

func TestRedactorReveals(t *testing.T) {
	r, err := NewRedactor(RedactSpec{Rules: []RedactRule{{Field: "comm", Action: "mask"}, {Field: "attrs.tenant", Action: "drop"}}})
	if err != nil {
		t.Fatal(err)
	}
	for src, want := range map[string]bool{
		`comm == "mkdir"`:         true,
		`exe endsWith "/mkdir"`:   true,
		`type == "fs.write"`:      false,
		`size > 0 && uid == 0`:    false,
		`attrs["tenant"] == "a"`:  true,
		`attrs["other"] == "a"`:   true, // reads the attrs map: cannot tell
		`len(comm) > 3`:           true,
		`subject startsWith "/a"`: false,
	} {
		f, err := Expr(src)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Reveals(f); got != want {
			t.Errorf("Reveals(Expr(%q)) = %v, want %v", src, got, want)
		}
	}
	g, _ := Glob("tenant", "a*")
	if !r.Reveals(g) {
		t.Errorf("Reveals(glob on tenant) = false, want true")
	}
}
