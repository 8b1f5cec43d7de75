package cluster

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestVersionVectorCompare(t *testing.T) {
	tests := []struct {
		a, b string
		want Order
	}{
		{"", "", Equal},
		{"a=1", "a=1", Equal},
		{"a=1", "a=2", Before},
		{"a=2", "a=1", After},
		{"a=1", "a=1,b=1", Before},
		{"a=1,b=1", "a=1", After},
		{"a=2", "a=1,b=1", Concurrent},
		{"a=1,b=2", "a=2,b=1", Concurrent},
		{"", "b=3", Before},
	}
	for _, tt := range tests {
		a, _ := ParseVersionVector(tt.a)
		b, _ := ParseVersionVector(tt.b)
		if got := a.Compare(b); got != tt.want {
			t.Errorf("Compare(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestVersionVectorCausality(t *testing.T) {
	// x and y are independent instances; y receives x's first event.
	x, y := VersionVector{}, VersionVector{}
	e1 := x.Tick("x").Clone()           // x issues e1
	e2 := y.Merge(e1).Tick("y").Clone() // y saw e1, issues e2
	e3 := x.Tick("x").Clone()           // x issues e3 without seeing e2
	if got := e1.Compare(e2); got != Before {
		t.Errorf("e1 vs e2 = %v, want before", got)
	}
	if got := e2.Compare(e3); got != Concurrent {
		t.Errorf("e2 vs e3 = %v, want concurrent", got)
	}
	if got := e3.Compare(e1); got != After {
		t.Errorf("e3 vs e1 = %v, want after", got)
	}
	merged := e2.Clone().Merge(e3)
	if diff := cmp.Diff(VersionVector{"x": 2, "y": 1}, merged); diff != "" {
		t.Errorf("merge (-want +got):\n%s", diff)
	}
}

func TestVersionVectorText(t *testing.T) {
	v := VersionVector{"b": 2, "a": 1, "z": 0}
	if got, want := v.String(), "a=1,b=2"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	back, err := ParseVersionVector(v.String())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(VersionVector{"a": 1, "b": 2}, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"a", "a=x", "=1", "a=1,a=2", "a=1,"} {
		if _, err := ParseVersionVector(bad); err == nil {
			t.Errorf("ParseVersionVector(%q) = nil error, want one", bad)
		}
	}
}

func ExampleVersionVector() {
	a := VersionVector{}.Tick("paris")
	b := a.Clone().Tick("tokyo") // tokyo saw paris's event
	c := VersionVector{}.Tick("oslo")
	fmt.Println(a.Compare(b), b.Compare(a), b.Compare(c), b)
	// Output: before after concurrent paris=1,tokyo=1
}
