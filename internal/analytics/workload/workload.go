// Package workload generates a labelled, reproducible stream of file-system
// events: days of background activity of a small server (a web server's
// logs, a database, a synchronisation job, a nightly backup, a user editing
// code), compressed in time, with injected incidents of each insight kind.
// It is what the analytics engine's relevance test replays; the same seed
// gives the same events. It is not safe for concurrent use.
package workload

import (
	"fmt"
	"iter"
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/semprop/semprop/event"
)

// Seed is the seed the committed measurement uses.
const Seed = 20261205

// Incident is one injected anomaly: what the detector should report.
type Incident struct {
	Kind       string    // "spike", "drop", "new-writer" or "unusual-hour"
	Start, End time.Time // [Start, End): the minutes it changes
	Comm, Dir  string
}

// Week is a generated workload.
type Week struct {
	Start     time.Time // 00:00 UTC of the first day (a Monday)
	Days      int
	Seed      uint64
	Incidents []Incident
}

// background is one steady activity: a process writing one type under one
// directory at rate(t) events per minute.
type background struct {
	comm string
	uid  uint32
	dir  string
	typ  string
	// files under dir the events touch, and the write size
	files int
	size  int64
	rate  func(t time.Time) float64
}

func diurnal(lo, hi float64, peak int) func(time.Time) float64 {
	return func(t time.Time) float64 {
		h := float64(t.Hour()) + float64(t.Minute())/60
		return lo + (hi-lo)*(1+math.Cos(2*math.Pi*(h-float64(peak))/24))/2
	}
}

func between(from, to int, rate float64, weekdays bool) func(time.Time) float64 {
	return func(t time.Time) float64 {
		if weekdays && (t.Weekday() == time.Saturday || t.Weekday() == time.Sunday) {
			return 0
		}
		if t.Hour() >= from && t.Hour() < to {
			return rate
		}
		return 0
	}
}

var backgrounds = []background{
	{comm: "nginx", uid: 33, dir: "/var/log", typ: "fs.write", files: 4, size: 900, rate: diurnal(15, 70, 15)},
	{comm: "postgres", uid: 999, dir: "/var/lib", typ: "fs.write", files: 500, size: 8192, rate: func(time.Time) float64 { return 30 }},
	{comm: "rsync", uid: 0, dir: "/srv/data", typ: "fs.create", files: 5000, size: 0, rate: between(9, 18, 1.5, false)},
	{comm: "rsync", uid: 0, dir: "/srv/data", typ: "fs.delete", files: 5000, size: 0, rate: between(9, 18, 1.2, false)},
	{comm: "backup", uid: 0, dir: "/srv/backup", typ: "fs.write", files: 50, size: 1 << 20, rate: func(t time.Time) float64 {
		if t.Hour() == 2 && t.Minute() < 30 {
			return 150
		}
		return 0
	}},
	{comm: "vim", uid: 1000, dir: "/home/alice", typ: "fs.write", files: 40, size: 4096, rate: between(9, 18, 6, true)},
	{comm: "bash", uid: 1000, dir: "/home/alice", typ: "fs.create", files: 200, size: 0, rate: between(8, 20, 1, true)},
	{comm: "cron", uid: 0, dir: "/etc", typ: "fs.write", files: 10, size: 300, rate: func(time.Time) float64 { return 0.2 }},
}

// New returns a workload of days days from start (truncated to a day)
// with six incidents of each kind, placed by seed.
func New(seed uint64, start time.Time, days int) *Week {
	w := &Week{Start: start.UTC().Truncate(24 * time.Hour), Days: days, Seed: seed}
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	busy := map[int64]bool{} // hours already holding an incident
	place := func(dayFrom int, hours []int) time.Time {
		for range 100000 {
			d := dayFrom + r.IntN(days-dayFrom)
			h := hours[r.IntN(len(hours))]
			at := w.Start.Add(time.Duration(d)*24*time.Hour + time.Duration(h)*time.Hour + time.Duration(5+r.IntN(40))*time.Minute)
			k := at.Unix() / 3600
			if busy[k] {
				continue
			}
			busy[k] = true
			return at
		}
		panic("workload: no room for the incidents")
	}
	day := []int{10, 11, 12, 13, 14, 15, 16}
	evening := []int{10, 11, 12, 13, 14, 15, 16, 19, 20, 21, 22, 23}
	newComms := []string{"tar", "python3", "cp", "unzip", "node", "curl"}
	newDirs := []string{"/srv/data", "/home/alice", "/var/lib"}
	// Each in an hour of its own: after one, the process has been active
	// at that hour, and a second there is no longer unusual.
	quiet := []int{0, 1, 3, 4, 5, 6, 21, 22, 23}
	r.Shuffle(len(quiet), func(i, j int) { quiet[i], quiet[j] = quiet[j], quiet[i] })
	for i := range 6 {
		at := place(4, quiet[i:i+1])
		w.Incidents = append(w.Incidents, Incident{Kind: "unusual-hour", Start: at, End: at.Add(4 * time.Minute), Comm: "vim", Dir: "/home/alice"})
	}
	for i := range 6 {
		at := place(1, day)
		w.Incidents = append(w.Incidents, Incident{Kind: "spike", Start: at, End: at.Add(3 * time.Minute), Comm: "rsync", Dir: "/srv/data"})
		at = place(1, day)
		w.Incidents = append(w.Incidents, Incident{Kind: "drop", Start: at, End: at.Add(15 * time.Minute), Comm: "postgres", Dir: "/var/lib"})
		at = place(1, evening)
		w.Incidents = append(w.Incidents, Incident{Kind: "new-writer", Start: at, End: at.Add(3 * time.Minute), Comm: newComms[i], Dir: newDirs[i%len(newDirs)]})
	}
	sort.Slice(w.Incidents, func(i, j int) bool { return w.Incidents[i].Start.Before(w.Incidents[j].Start) })
	return w
}

// End returns the end of the workload.
func (w *Week) End() time.Time { return w.Start.Add(time.Duration(w.Days) * 24 * time.Hour) }

// active returns the incident of kind that covers minute t, if any.
func (w *Week) active(kind string, t time.Time) (Incident, bool) {
	for _, in := range w.Incidents {
		if in.Kind == kind && !t.Before(in.Start) && t.Before(in.End) {
			return in, true
		}
	}
	return Incident{}, false
}

// Events yields the workload's events in time order, with Seq from 1. The
// yielded event is reused: copy it to keep it.
func (w *Week) Events() iter.Seq[*event.Event] {
	return func(yield func(*event.Event) bool) {
		r := rand.New(rand.NewPCG(w.Seed, 0xe7e27))
		var seq uint64
		var batch []*event.Event
		var pool []event.Event
		end := w.End()
		for t := w.Start; t.Before(end); t = t.Add(time.Minute) {
			batch = batch[:0]
			n := 0
			emit := func(b background, count int) {
				for range count {
					if n == len(pool) {
						pool = append(pool, event.Event{})
					}
					ev := &pool[n]
					n++
					*ev = event.Event{Type: b.typ, Source: "semprop://workload", Boundary: event.BoundaryKernel}
					ev.Time = t.Add(time.Duration(r.Int64N(int64(time.Minute))))
					ev.Subject = fmt.Sprintf("%s/%s/f%d", b.dir, b.comm, r.IntN(max(b.files, 1)))
					ev.Context.Comm = b.comm
					ev.Context.SetUID(b.uid)
					ev.Context.SetPID(int32(1000 + b.uid))
					if b.size > 0 {
						ev.Context.SetBytes(1 + r.Int64N(b.size))
					}
					batch = append(batch, ev)
				}
			}
			for _, b := range backgrounds {
				rate := b.rate(t)
				if b.comm == "postgres" {
					if _, ok := w.active("drop", t); ok {
						rate = 0
					}
				}
				emit(b, poisson(r, rate))
			}
			if in, ok := w.active("spike", t); ok {
				emit(background{comm: in.Comm, uid: 0, dir: in.Dir, typ: "fs.delete", files: 100000}, 1000+r.IntN(4000))
			}
			if in, ok := w.active("new-writer", t); ok {
				emit(background{comm: in.Comm, uid: 1000, dir: in.Dir, typ: "fs.write", files: 300, size: 65536}, 200+r.IntN(600))
			}
			if in, ok := w.active("unusual-hour", t); ok {
				emit(background{comm: in.Comm, uid: 1000, dir: in.Dir, typ: "fs.write", files: 40, size: 4096}, 80+r.IntN(80))
			}
			sort.Slice(batch, func(i, j int) bool { return batch[i].Time.Before(batch[j].Time) })
			for _, ev := range batch {
				seq++
				ev.Seq = seq
				if !yield(ev) {
					return
				}
			}
		}
	}
}

// poisson draws a Poisson variate of mean lambda.
func poisson(r *rand.Rand, lambda float64) int {
	if lambda <= 0 {
		return 0
	}
	if lambda > 30 {
		return max(0, int(math.Round(lambda+math.Sqrt(lambda)*r.NormFloat64())))
	}
	l, k, p := math.Exp(-lambda), 0, 1.0
	for {
		p *= r.Float64()
		if p <= l {
			return k
		}
		k++
	}
}
