package analytics

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The insight kinds.
const (
	KindSpike       = "spike"
	KindDrop        = "drop"
	KindNewWriter   = "new-writer"
	KindUnusualHour = "unusual-hour"
)

// Detector parameters that are not configuration: they define the method.
const (
	warmupMinutes = 1440 // no insight before a day of history
	fastAlpha     = 0.1  // EWMA of the last ~10 minutes
	slotAlpha     = 1.0 / 60
	slotReady     = 60 // a seasonal slot is used once it saw an hour
	dropMinMean   = 20 // only series usually at least this busy can drop
	dropRatio     = 0.3
	recoverRatio  = 0.7
	newWriterAge  = 10 * 60 // seconds: a writer this young is new
	unusualDays   = 3       // a process needs this many days of history
	hourActive    = 5       // events in an hour that make it an active hour
	staleSeconds  = 7 * 86400
	cusumSlack    = 1.5 // deviations per minute a shortfall must exceed to add up
)

// mutating are the types that change the file system: what makes a writer.
var mutating = map[string]bool{
	"fs.write": true, "fs.create": true, "fs.delete": true, "fs.rename": true, "fs.mkdir": true,
	"fs.rmdir": true, "fs.link": true, "fs.symlink": true, "fs.attrib": true,
}

// ewma is an exponentially weighted mean and variance.
type ewma struct {
	mean, vari float64
	n          int
}

func (e *ewma) update(x, alpha float64) {
	if e.n == 0 {
		e.mean, e.vari = x, 0
	} else {
		d := x - e.mean
		e.mean += alpha * d
		e.vari = (1 - alpha) * (e.vari + alpha*d*d)
	}
	e.n++
}

// series is the detector's state of one process writing one type under one
// directory (a cdtKey), observed once a minute.
type series struct {
	comm, dir, typ string
	first          int64 // minute first seen
	lastNonZero    int64
	fast           ewma
	slots          [24]ewma // seasonal baseline: the same hour of the day
	cusum          float64
	inSpike        bool
	inDrop         bool
	dropSince      int64
	dropMinutes    int
	newReported    bool
}

// proc is the detector's state of one process (comm): the hours of the
// day it is active in.
type proc struct {
	first      int64
	hourDay    int64 // the day of the hour being counted
	hour       int
	hourCount  int64
	daysActive [24]int
	reported   map[int64]bool // hour starts reported as unusual
}

// detector finds insights in the minute rollups of the engine's view. Not
// safe for concurrent use: the engine holds its lock.
type detector struct {
	cfg     InsightConfig
	series  map[cdtKey]*series
	procs   map[string]*proc
	pairs   map[[2]string]int64 // (comm, dir) of writers → first minute
	minutes int                 // minutes observed
	last    int64               // start of the last minute observed
}

func newDetector(cfg InsightConfig) *detector {
	return &detector{cfg: cfg, series: make(map[cdtKey]*series), procs: make(map[string]*proc),
		pairs: make(map[[2]string]int64), last: -1}
}

// observe takes the rollup of one minute and returns its insights.
// Minutes must come in order; one already observed is ignored. Gaps (no
// rollup: no events) count as minutes of zeros.
func (d *detector) observe(r *rollup) []Insight {
	if r.res != res1m || r.start <= d.last {
		return nil
	}
	if d.last >= 0 {
		// Quiet minutes in between: zeros for every series (bounded: a
		// long gap is a new start for the fast baselines anyway).
		for t := d.last + 60; t < r.start && t <= d.last+60*60; t += 60 {
			d.step(t, nil)
		}
	}
	vals := make(map[cdtKey]int64)
	for _, it := range r.items {
		if it.dim != dimCDT {
			continue
		}
		parts := strings.SplitN(it.key, cdtSep, 3)
		if len(parts) != 3 || parts[0] == otherKey || strings.HasPrefix(parts[2], "semprop.") {
			continue
		}
		vals[cdtKey{parts[0], parts[1], parts[2]}] = it.count
	}
	return d.step(r.start, vals)
}

func (d *detector) step(t int64, vals map[cdtKey]int64) []Insight {
	d.last = t
	d.minutes++
	warm := d.minutes > warmupMinutes
	hour := int(mod(t, 86400) / 3600)
	var out []Insight

	// Processes: per-minute totals, unusual hours.
	procTotals := make(map[string]int64)
	procDirs := make(map[string]map[string]int64)
	for k, x := range vals {
		procTotals[k.comm] += x
		if procDirs[k.comm] == nil {
			procDirs[k.comm] = make(map[string]int64)
		}
		procDirs[k.comm][k.dir] += x
	}
	unusual := make(map[string]bool)
	for comm, x := range procTotals {
		p, ok := d.procs[comm]
		if !ok {
			p = &proc{first: t, hourDay: -1, reported: make(map[int64]bool)}
			d.procs[comm] = p
		}
		day := t / 86400
		if p.hourDay != day || p.hour != hour {
			if p.hourDay >= 0 && p.hourCount >= hourActive {
				p.daysActive[p.hour]++
			}
			p.hourDay, p.hour, p.hourCount = day, hour, 0
		}
		p.hourCount += x
		hstart := t - mod(t, 3600)
		unusual[comm] = p.reported[hstart] // its series do not spike this hour
		if warm && t-p.first >= unusualDays*86400 && p.daysActive[hour] == 0 && x >= d.cfg.MinCount && !p.reported[hstart] {
			p.reported[hstart] = true
			unusual[comm] = true
			dir := topKey(procDirs[comm])
			days := int((t - p.first) / 86400)
			out = append(out, Insight{Kind: KindUnusualHour, Time: time.Unix(t, 0).UTC(), By: "comm", Key: comm + "@" + dir,
				Value: float64(x), Expected: 0, Low: 0, High: 0, Score: float64(days),
				Explanation: fmt.Sprintf("%s made %s changes under %s in 1 min at %02d:00 UTC; it was not active at this hour on any of the last %d days",
					comm, commas(x), dir, hour, days)})
		}
	}

	// Series: new writers, spikes and drops.
	for k := range vals {
		if _, ok := d.series[k]; ok {
			continue
		}
		s := &series{comm: k.comm, dir: k.dir, typ: k.typ, first: t}
		d.series[k] = s
		if mutating[k.typ] {
			pk := [2]string{k.comm, k.dir}
			if _, ok := d.pairs[pk]; !ok {
				d.pairs[pk] = t
			}
		}
	}
	for k, s := range d.series {
		x := vals[k]
		if x > 0 {
			s.lastNonZero = t
		} else if t-s.lastNonZero > staleSeconds {
			delete(d.series, k)
			continue
		}
		if in, ok := d.seriesStep(s, t, hour, float64(x), warm, unusual[k.comm]); ok {
			out = append(out, in)
		}
	}
	// Map order must not decide the order of a minute's insights.
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// seriesStep scores one series' value x of minute t and updates it.
func (d *detector) seriesStep(s *series, t int64, hour int, x float64, warm, unusual bool) (Insight, bool) {
	base := &s.fast
	if s.slots[hour].n >= slotReady {
		base = &s.slots[hour]
	}
	exp := base.mean
	sd := math.Sqrt(base.vari + exp + 1) // a Poisson floor: counts are never steadier than that
	score := (x - exp) / sd
	low, high := math.Max(0, exp-2*sd), exp+2*sd
	at := time.Unix(t, 0).UTC()
	key := s.comm + "@" + s.dir
	var (
		in Insight
		ok bool
	)
	thr := d.cfg.Threshold
	eligible := warm && t-s.first >= 3600
	pk := [2]string{s.comm, s.dir}

	switch {
	case warm && mutating[s.typ] && t-d.pairs[pk] < newWriterAge && !s.newReported && int64(x) >= d.cfg.MinCount && !unusual:
		s.newReported = true
		in, ok = Insight{Kind: KindNewWriter, Time: at, By: "comm@dir", Key: key, Value: x, Expected: 0, Low: 0, High: 0,
			Score: x, Explanation: fmt.Sprintf("%s, which never wrote under %s before, %s in 1 min", s.comm, s.dir, did(s.typ, int64(x)))}, true
	case eligible && !unusual && score >= thr && int64(x) >= d.cfg.MinCount && x > 2*exp && !s.inSpike:
		s.inSpike = true
		in, ok = Insight{Kind: KindSpike, Time: at, By: "comm@dir", Key: key, Value: x, Expected: exp, Low: low, High: high,
			Score: score, Explanation: fmt.Sprintf("%s %s under %s in 1 min; usual is %s", s.comm, did(s.typ, int64(x)), s.dir, usual(low, high))}, true
	}
	if s.inSpike && score < thr/2 {
		s.inSpike = false
	}

	// Drops: a one-sided CUSUM of the standardized shortfall; a level
	// shift down is reported once, when the sum passes the threshold and
	// the level is under dropRatio of the baseline.
	if eligible && exp >= dropMinMean {
		s.cusum = math.Max(0, s.cusum+(exp-x)/sd-cusumSlack)
	} else {
		s.cusum = 0
	}
	if !s.inDrop && s.cusum >= thr && x < dropRatio*exp && !ok {
		s.inDrop, s.dropSince, s.dropMinutes = true, t, 0
		in, ok = Insight{Kind: KindDrop, Time: at, By: "comm@dir", Key: key, Value: x, Expected: exp, Low: low, High: high,
			Score: s.cusum, Explanation: fmt.Sprintf("%s %s under %s in 1 min; usual is %s", s.comm, did(s.typ, int64(x)), s.dir, usual(low, high))}, true
	}
	if s.inDrop {
		s.dropMinutes++
		if x >= recoverRatio*exp || s.dropMinutes > 60 {
			s.inDrop, s.cusum = false, 0
		} else {
			return in, ok // the baseline does not learn the outage
		}
	}

	// Learn, with the value limited to a few deviations (a spike must not
	// become the new normal at once).
	xc := x
	if base.n > 0 && xc > exp+4*sd {
		xc = exp + 4*sd
	}
	s.fast.update(xc, fastAlpha)
	s.slots[hour].update(xc, slotAlpha)
	return in, ok
}

// did says what a process did: "deleted 4,812 files".
func did(typ string, n int64) string {
	c := commas(n)
	switch typ {
	case "fs.delete":
		return "deleted " + c + " files"
	case "fs.create":
		return "created " + c + " files"
	case "fs.write":
		return "wrote " + c + " times"
	case "fs.rename":
		return "renamed " + c + " files"
	case "fs.mkdir":
		return "made " + c + " directories"
	case "fs.rmdir":
		return "removed " + c + " directories"
	}
	return "made " + c + " " + typ + " events"
}

func usual(low, high float64) string {
	return fmt.Sprintf("%s–%s", commas(int64(math.Floor(low))), commas(int64(math.Ceil(high))))
}

// commas formats n with thousands separators.
func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func topKey(m map[string]int64) string {
	best, bk := int64(-1), ""
	for k, v := range m {
		if v > best || (v == best && k < bk) {
			best, bk = v, k
		}
	}
	return bk
}

func insightJSON(in Insight) []byte {
	b, _ := json.Marshal(in)
	return b
}
