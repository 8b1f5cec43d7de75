package filter

import (
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/semprop/semprop/internal/cputime"
)

// The same three filters, natively (Spec), as expressions lowered to native
// predicates, and as expressions on the expr VM. cel-go is not a dependency
// of this module, so it is not measured here.
var benchFilters = []struct {
	name, spec, expr string
}{
	{"exact", `{"exact":{"type":"fs.write"}}`, `type == "fs.write"`},
	{"range", `{"range":{"size":{"min":1,"max":1048576}}}`, `size >= 1 && size <= 1048576`},
	{"composite", `{"all":[{"prefix":{"type":"fs."}},{"not":{"exact":{"comm":"rsync"}}},{"exact":{"uid":"1000"}}]}`,
		`type startsWith "fs." && comm != "rsync" && uid == 1000`},
}

func BenchmarkFilter(b *testing.B) {
	ev := sampleEvents(b)[0]
	for _, bf := range benchFilters {
		var s Spec
		if err := json.Unmarshal([]byte(bf.spec), &s); err != nil {
			b.Fatal(err)
		}
		native, err := Compile(s)
		if err != nil {
			b.Fatal(err)
		}
		low, err := Expr(bf.expr)
		if err != nil {
			b.Fatal(err)
		}
		vmf, err := Expr(bf.expr, NoLowering())
		if err != nil {
			b.Fatal(err)
		}
		for _, v := range []struct {
			name string
			f    Filter
		}{{"native", native}, {"expr-lowered", low}, {"expr-vm", vmf}} {
			b.Run(bf.name+"/"+v.name, func(b *testing.B) {
				b.ReportAllocs()
				start := cputime.Now()
				for b.Loop() {
					v.f.Match(ev)
				}
				cputime.Report(b, start)
			})
		}
	}
}

func BenchmarkFilterParallelVM(b *testing.B) {
	ev := sampleEvents(b)[0]
	f, err := Expr(`type startsWith "fs." && comm != "rsync" && uid == 1000`, NoLowering())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			f.Match(ev)
		}
	})
}

func BenchmarkRedact(b *testing.B) {
	r, err := NewRedactor(RedactSpec{Key: "k", Rules: []RedactRule{
		{Field: "subject", Action: "mask", Segments: []int{1}}, {Field: "uid", Action: "hash"}}})
	if err != nil {
		b.Fatal(err)
	}
	ev := sampleEvents(b)[0]
	b.ReportAllocs()
	start := cputime.Now()
	for b.Loop() {
		r.Apply(ev)
	}
	cputime.Report(b, start)
}

// BenchmarkCompositeParallel compares evaluating an "all" of four VM
// expressions in sequence with evaluating them on four goroutines per
// event. On this 2-core machine the parallel form never pays (goroutine
// hand-off costs more than an evaluation), so composites evaluate
// sequentially.
func BenchmarkCompositeParallel(b *testing.B) {
	ev := sampleEvents(b)[0]
	var fs []Filter
	for _, src := range []string{`size > 10 && comm != "x"`, `uid == 1000 || gid == 5`, `type startsWith "fs."`, `len(subject) > 3`} {
		f, err := Expr(src, NoLowering())
		if err != nil {
			b.Fatal(err)
		}
		fs = append(fs, f)
	}
	b.Run("sequential", func(b *testing.B) {
		all := All(fs...)
		b.ReportAllocs()
		start := cputime.Now()
		for b.Loop() {
			all.Match(ev)
		}
		cputime.Report(b, start)
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		start := cputime.Now()
		for b.Loop() {
			var wg sync.WaitGroup
			var failed atomic.Bool
			for _, f := range fs {
				wg.Go(func() {
					if !f.Match(ev) {
						failed.Store(true)
					}
				})
			}
			wg.Wait()
			_ = failed.Load()
		}
		cputime.Report(b, start)
	})
}
