package main

import (
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// better says which direction of a metric is good.
type better int

const (
	higher better = iota
	lower
)

// line is one comparison: a metric measured for semprop and for one peer,
// each once per repetition.
type line struct {
	row     int
	name    string // what is measured, e.g. "throughput, 10 subscribers"
	unit    string
	better  better
	semprop string // which semprop configuration
	peer    string // which peer configuration ("" = no peer: semprop alone)
	s, p    []float64
	// paired: s[i] and p[i] were measured next to each other (the same
	// repetition, back to back), so their ratio is reported per repetition
	// too; it is less moved by the machine's slow and fast phases than
	// the ratio of the medians.
	paired bool
}

type report struct {
	mu         sync.Mutex
	cmd        string
	quick      bool
	reps       int
	fuseReps   int // row 5's repetitions
	start, end time.Time
	loadBefore string
	loadAfter  string
	lines      []*line
	notes      map[int][]string
	commit     string // what semprop code was measured
}

// add records a comparison and prints it at once (stderr) for progress.
func (r *report) add(l *line) {
	r.mu.Lock()
	r.lines = append(r.lines, l)
	r.mu.Unlock()
	fmt.Fprintf(os.Stderr, "   %-60s %s\n", l.name, l.summary())
}

// note records a setting or caveat of a row.
func (r *report) note(row int, s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.notes == nil {
		r.notes = map[int][]string{}
	}
	r.notes[row] = append(r.notes[row], s)
}

func (l *line) summary() string {
	if l.peer == "" {
		return fmt.Sprintf("semprop %s %s %v", fmtv(median(l.s)), l.unit, fmtAll(l.s))
	}
	return fmt.Sprintf("semprop %s vs %s %s %s (ratio %s) %v %v", fmtv(median(l.s)), l.peer, fmtv(median(l.p)), l.unit,
		l.ratio(), fmtAll(l.s), fmtAll(l.p))
}

func (l *line) ratio() string {
	ms, mp := median(l.s), median(l.p)
	if l.peer == "" || mp == 0 || math.IsNaN(ms) || math.IsNaN(mp) {
		return "–"
	}
	r := fmt.Sprintf("%.2f", ms/mp)
	if l.paired {
		if m, lo, hi, ok := pairedRatio(l.s, l.p); ok {
			r += fmt.Sprintf("; paired %.2f", m)
			if !math.IsNaN(lo) {
				r += fmt.Sprintf(" (95%% CI %.2f–%.2f)", lo, hi)
			}
		}
	}
	return r
}

// pairedRatio returns the median of the per-repetition ratios s[i]/p[i]
// and a distribution-free 95% confidence interval of that median: the
// order statistics k and n+1-k of the sorted ratios, k the largest rank
// with P(Binomial(n, ½) < k) ≤ 2.5%. With fewer than 6 pairs no such
// interval exists and lo, hi are NaN. ok is false without pairs.
func pairedRatio(s, p []float64) (med, lo, hi float64, ok bool) {
	if len(s) != len(p) || len(s) == 0 {
		return 0, 0, 0, false
	}
	var rs []float64
	for i := range s {
		if p[i] > 0 {
			rs = append(rs, s[i]/p[i])
		}
	}
	n := len(rs)
	if n == 0 {
		return 0, 0, 0, false
	}
	sort.Float64s(rs)
	med = median(rs)
	k := medianCIRank(n)
	if k == 0 {
		return med, math.NaN(), math.NaN(), true
	}
	return med, rs[k-1], rs[n-k], true
}

// medianCIRank is the largest k ≥ 1 with P(X ≤ k-1) ≤ 0.025 for X ~
// Binomial(n, ½), or 0 when even k = 1 is too wide (n < 6).
func medianCIRank(n int) int {
	k, cum, c := 0, 0.0, 1.0 // c = C(n, i)
	for i := 0; i < n; i++ {
		cum += c * math.Pow(0.5, float64(n))
		if cum > 0.025 {
			break
		}
		k = i + 1
		c = c * float64(n-i) / float64(i+1)
	}
	return k
}

func (l *line) verdict() string {
	ms, mp := median(l.s), median(l.p)
	if l.peer == "" || mp == 0 {
		return ""
	}
	r := ms / mp
	switch {
	case r > 0.95 && r < 1.05:
		return "≈ tie"
	case (r > 1) == (l.better == higher):
		return "semprop better"
	default:
		return "**semprop worse**"
	}
}

func fmtv(v float64) string {
	a := math.Abs(v)
	switch {
	case a == 0:
		return "0"
	case a >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

func fmtAll(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmtv(x)
	}
	return "[" + strings.Join(s, " ") + "]"
}

func (r *report) markdown() string {
	var b strings.Builder
	mode := "full"
	if r.quick {
		mode = "quick (small counts; spot check only)"
	}
	fmt.Fprintf(&b, "# semprop side by side with its peers\n\n")
	fmt.Fprintf(&b, "- command: `%s` (mode: %s; %d repetitions of every measurement, %d of row 5's; medians shown, all values in brackets)\n", r.cmd, mode, r.reps, r.fuseReps)
	fmt.Fprintf(&b, "- machine: %s\n", machine())
	if r.commit != "" {
		fmt.Fprintf(&b, "- semprop: %s\n", r.commit)
	}
	fmt.Fprintf(&b, "- date: %s → %s (%v)\n", r.start.UTC().Format(time.RFC3339), r.end.UTC().Format("15:04:05Z"), r.end.Sub(r.start).Round(time.Second))
	fmt.Fprintf(&b, "- load average (1, 5, 15 min) before: %s; after: %s. The machine is shared: other processes ran during the run.\n", r.loadBefore, r.loadAfter)
	fmt.Fprintf(&b, "- ratio = semprop ÷ peer (medians); \"better\" column reads the ratio with the metric's direction (higher or lower is better). \"paired\" (where both sides of a repetition ran back to back): the median of the per-repetition ratios, with a distribution-free 95%% confidence interval (sign test).\n\n")
	rows := map[int]bool{}
	for _, l := range r.lines {
		rows[l.row] = true
	}
	for row := range r.notes {
		rows[row] = true
	}
	var order []int
	for row := range rows {
		order = append(order, row)
	}
	sort.Ints(order)
	for _, row := range order {
		fmt.Fprintf(&b, "## %d. %s\n\n", row, rowTitles[row])
		var ls []*line
		for _, l := range r.lines {
			if l.row == row {
				ls = append(ls, l)
			}
		}
		if len(ls) > 0 {
			b.WriteString("| measurement | semprop | value | peer | value | ratio | better is | verdict | semprop runs | peer runs |\n")
			b.WriteString("|---|---|---:|---|---:|---:|---|---|---|---|\n")
			for _, l := range ls {
				dir := "higher"
				if l.better == lower {
					dir = "lower"
				}
				peer, pv, pr := l.peer, fmtv(median(l.p))+" "+l.unit, fmtAll(l.p)
				if l.peer == "" {
					peer, pv, pr = "–", "–", ""
				}
				fmt.Fprintf(&b, "| %s | %s | %s %s | %s | %s | %s | %s | %s | %s | %s |\n",
					l.name, l.semprop, fmtv(median(l.s)), l.unit, peer, pv, l.ratio(), dir, l.verdict(), fmtAll(l.s), pr)
			}
			b.WriteString("\n")
		}
		if ns := r.notes[row]; len(ns) > 0 {
			b.WriteString("Settings and caveats:\n\n")
			for _, n := range ns {
				fmt.Fprintf(&b, "- %s\n", n)
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}
