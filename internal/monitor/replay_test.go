package monitor

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// The labelled replay: a generator of one day of a daemon's metrics,
// compressed (one sample and one evaluation every 15 simulated seconds,
// no waiting), with injected incidents and benign noise whose times are
// known. TestReplayDefaultRules runs the default rules over it and
// reports, per rule, false positives, missed incidents, time to detect,
// and notifications per incident before and after grouping and
// inhibition.

// replaySeed seeds the noise of the replay.
const replaySeed = 21

var replayStart = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

// incident is a labelled incident: the rules that should detect it.
type incident struct {
	name       string
	start, end time.Duration // offsets into the day
	expect     []string
}

var incidents = []incident{
	{"partition", 7 * time.Hour, 7*time.Hour + 20*time.Minute, []string{"NoQuorum"}},
	{"overflow storm", 10 * time.Hour, 10*time.Hour + 20*time.Minute, []string{"CaptureOverflow"}},
	{"stuck consumer", 13 * time.Hour, 15 * time.Hour, []string{"ConsumerLagGrowing"}},
	{"flapping fsync latency", 17 * time.Hour, 18 * time.Hour, []string{"JournalFsyncSlow"}},
	{"disk fill", 20 * time.Hour, 22*time.Hour + 30*time.Minute, []string{"DiskPredictedFull", "DiskAlmostFull", "JournalNoSpace"}},
}

// benign is the noise that must not alert: bursts normal for their hour
// and single spikes.
var benign = []string{
	"02:00 backup burst: 500 events/s for 8 minutes (the backup consumer falls 180k behind, then drains)",
	"03:00 a temporary 8 GB file, written in 2 minutes, deleted 10 minutes later",
	"04:00, 11:30, 19:00 single action failures",
	"05:00 one fsync spike (30% of one scrape's fsyncs take 300-500 ms)",
	"09:00 morning sync burst: 300 events/s for 5 minutes",
	"hourly journal retention (a 400 MB sawtooth on free space), daily traffic curve, noise on every series",
}

// grace is how long after an incident's end its alerts still count as
// its own (keep_firing_for, recovery).
const grace = 30 * time.Minute

func (in incident) covers(at time.Duration) bool { return at >= in.start && at <= in.end+grace }

// replayDay generates the day's metrics step by step.
type replayDay struct {
	r *rand.Rand

	lastSeq                  float64
	lag                      map[string]float64
	overflows                map[string]float64
	done, failed             float64
	fsyncBuckets             []float64 // cumulative counts per le
	freeBase                 float64
	fill                     float64 // bytes filled by the disk-fill incident
	actionsFailedAt          []time.Duration
	partition, storm, stuck  bool
	flapping, spike, noSpace bool
}

var fsyncLe = []float64{0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, math.Inf(1)}

const diskTotal = 100e9

func newReplayDay() *replayDay {
	return &replayDay{r: rand.New(rand.NewPCG(replaySeed, 0)), lag: map[string]float64{"indexer": 0, "backup": 0},
		overflows: map[string]float64{"/srv/a": 0, "/srv/b": 0}, fsyncBuckets: make([]float64, len(fsyncLe)),
		freeBase: 35e9, lastSeq: 5e6,
		actionsFailedAt: []time.Duration{4 * time.Hour, 11*time.Hour + 30*time.Minute, 19 * time.Hour}}
}

func in(at, from, to time.Duration) bool { return at >= from && at < to }

// step advances the day to at (dt after the last step) and appends one
// sample of every series to st.
func (d *replayDay) step(st *Store, at, dt time.Duration) {
	now := replayStart.Add(at)
	secs := dt.Seconds()
	h := at.Hours()
	// Arrivals: a daily curve (5/s at night, 50/s mid-afternoon) with
	// noise, plus the bursts that are normal at their hour.
	rate := 5 + 45*math.Max(0, math.Sin(math.Pi*(h-6)/16))
	rate *= 1 + 0.2*(d.r.Float64()-0.5)
	if in(at, 2*time.Hour, 2*time.Hour+8*time.Minute) {
		rate = 500
	}
	if in(at, 9*time.Hour, 9*time.Hour+5*time.Minute) {
		rate = 300
	}
	arrived := rate * secs
	d.lastSeq += arrived
	d.stuck = in(at, 13*time.Hour, 15*time.Hour)
	d.partition = in(at, 7*time.Hour, 7*time.Hour+20*time.Minute)
	if d.partition {
		d.lastSeq -= arrived // nothing is committed without quorum
		arrived = 0
	}
	for name, capacity := range map[string]float64{"indexer": 400, "backup": 150} {
		if name == "indexer" && d.stuck {
			capacity = 0
		}
		d.lag[name] = math.Max(0, d.lag[name]+arrived-capacity*secs)
		st.Append("semprop_consumer_lag", Labels{"consumer": name}, now, d.lag[name])
	}
	st.Append("semprop_journal_last_seq", Labels{}, now, d.lastSeq)
	st.Append("semprop_journal_first_seq", Labels{}, now, math.Max(1, d.lastSeq-10e6))

	// Capture: an overflow storm on /srv/a.
	d.storm = in(at, 10*time.Hour, 10*time.Hour+20*time.Minute)
	if d.storm {
		d.overflows["/srv/a"] += float64(1 + d.r.IntN(3))
	}
	for root, v := range d.overflows {
		st.Append("semprop_kernel_overflows_total", Labels{"root": root}, now, v)
	}
	st.Append("semprop_bridge_lost_total", Labels{"tree": "/srv/a"}, now, 0)

	// fsync latency: 100 fsyncs per scrape; the share in the slow tail
	// flaps during the incident (p99 about 210 ms, 85 ms, 16 ms).
	tail, tailLe := 0.005, 4 // 0.5% at <= 16 ms
	d.flapping = in(at, 17*time.Hour, 18*time.Hour)
	if d.flapping {
		switch int(at.Minutes()) % 12 {
		case 0, 1, 2, 3, 4:
			tail, tailLe = 0.03, 8
		case 5, 6, 7, 8:
			tail, tailLe = 0.015, 7
		default:
			tail, tailLe = 0.005, 4
		}
	}
	d.spike = at == 5*time.Hour
	if d.spike {
		tail, tailLe = 0.3, 9
	}
	n := 100.0
	slow := math.Round(n * tail)
	for i := range fsyncLe {
		add := 0.0
		if i >= 2 {
			add += n - slow // the fast bulk: <= 4 ms
		}
		if i >= tailLe {
			add += slow
		}
		d.fsyncBuckets[i] += add
		st.Append("semprop_journal_fsync_duration_seconds_bucket", Labels{"le": formatLe(fsyncLe[i])}, now, d.fsyncBuckets[i])
	}

	// Disk: free space shrinks slowly with the journal, hourly retention
	// gives it back (a sawtooth), a temporary file at 03:00, the fill.
	d.freeBase -= 2e9 / 86400 * secs
	saw := 400e6 * math.Mod(at.Hours(), 1)
	tmp := 0.0
	switch {
	case in(at, 3*time.Hour, 3*time.Hour+2*time.Minute):
		tmp = 8e9 * (at - 3*time.Hour).Minutes() / 2
	case in(at, 3*time.Hour+2*time.Minute, 3*time.Hour+12*time.Minute):
		tmp = 8e9
	}
	switch {
	case in(at, 20*time.Hour, 22*time.Hour+30*time.Minute):
		d.fill += 25e9 / 3600 * secs
	default:
		d.fill = 0
	}
	free := d.freeBase - saw - tmp - d.fill + 50e6*(d.r.Float64()-0.5)
	free = math.Max(0, free)
	d.noSpace = free < 100e6
	st.Append("semprop_data_disk_free_bytes", Labels{}, now, free)
	st.Append("semprop_data_disk_total_bytes", Labels{}, now, diskTotal)
	st.Append("semprop_journal_no_space", Labels{}, now, b2f(d.noSpace))

	// Cluster and actions.
	st.Append("semprop_cluster_ready", Labels{}, now, b2f(!d.partition))
	d.done += float64(d.r.IntN(3)) * secs / 30
	for _, f := range d.actionsFailedAt {
		if at == f {
			d.failed++
		}
	}
	st.Append("semprop_actions_done_total", Labels{}, now, d.done)
	st.Append("semprop_actions_failed_total", Labels{}, now, d.failed)

	// Health checks as the daemon would export them.
	st.Append("semprop_health_status", Labels{"check": "journal", "component": "journal"}, now, 2*b2f(d.noSpace))
	st.Append("semprop_health_status", Labels{"check": "cluster", "component": "cluster"}, now, 2*b2f(d.partition))
	st.Append("semprop_health_status", Labels{"check": "capture:/srv/a", "component": "capture"}, now, b2f(d.storm))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

type ruleReport struct {
	episodes, fpEpisodes int
	firingSteps, benign  int // steps firing outside incidents; benign steps in all
	detected             map[string]time.Duration
}

func TestReplayDefaultRules(t *testing.T) {
	if testing.Short() {
		t.Skip("the replay takes a few seconds")
	}
	var now time.Time
	mon, err := New(Config{}, Options{Logger: quiet, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	reports := map[string]*ruleReport{}
	for _, rc := range mon.Rules() {
		reports[rc.Alert] = &ruleReport{detected: map[string]time.Duration{}}
	}
	raw := map[string]int{} // incident → onsets of the rules' bare conditions (no for, keep_firing_for, recovery)
	rawTrue := map[string]bool{}
	before := map[string]int{} // incident → alert transitions (a naive notifier's messages)
	after := map[string]int{}  // incident → notifications after grouping, dedup, inhibition
	outside := 0
	state := map[string]string{} // fingerprint → last state
	firingSince := map[string]time.Duration{}
	day := newReplayDay()
	const dt = 15 * time.Second
	which := func(at time.Duration) string {
		for _, in := range incidents {
			if in.covers(at) {
				return in.name
			}
		}
		return ""
	}
	for at := time.Duration(0); at < 24*time.Hour; at += dt {
		now = replayStart.Add(at)
		day.step(mon.Store(), at, dt)
		ns := mon.Evaluate(context.Background(), now)
		inc := which(at)
		for _, r := range mon.rules {
			v, _ := mon.ev.Eval(context.Background(), r.expr, now)
			holds := map[string]bool{}
			for _, e := range v {
				k := r.Name() + "\x00" + e.Labels.key()
				holds[k] = true
				if !rawTrue[k] && inc != "" {
					raw[inc]++
				}
			}
			for k := range rawTrue {
				if strings.HasPrefix(k, r.Name()+"\x00") && !holds[k] {
					delete(rawTrue, k)
				}
			}
			for k := range holds {
				rawTrue[k] = true
			}
		}
		for range ns {
			if inc == "" {
				outside++
			} else {
				after[inc]++
			}
		}
		firingNow := map[string]bool{}
		for _, a := range mon.Alerts() {
			name := a.Name()
			rep := reports[name]
			if a.State == StateFiring {
				firingNow[name] = true
			}
			if prev := state[a.Fingerprint]; prev != a.State && a.State != StatePending {
				if inc != "" {
					before[inc]++
				}
				if a.State == StateFiring {
					rep.episodes++
					firingSince[a.Fingerprint] = at
					if inc == "" {
						rep.fpEpisodes++
						t.Logf("false positive: %s %v at %v", name, a.Labels, at)
					}
					for _, in := range incidents {
						if in.covers(at) && slices.Contains(in.expect, name) {
							if _, ok := rep.detected[in.name]; !ok {
								rep.detected[in.name] = at - in.start
							}
						}
					}
				}
			}
			state[a.Fingerprint] = a.State
		}
		for name, rep := range reports {
			if inc == "" {
				rep.benign++
				if firingNow[name] {
					rep.firingSteps++
				}
			}
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "\n%-28s %8s %8s %9s %12s %8s  %s\n", "rule", "episodes", "false+", "FP rate", "benign time", "missed", "time to detect")
	names := make([]string, 0, len(reports))
	for n := range reports {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		rep := reports[n]
		fp := 0.0
		if rep.episodes > 0 {
			fp = float64(rep.fpEpisodes) / float64(rep.episodes)
		}
		var missed, ttd []string
		for _, in := range incidents {
			if !slices.Contains(in.expect, n) {
				continue
			}
			if d, ok := rep.detected[in.name]; ok {
				ttd = append(ttd, fmt.Sprintf("%s %v", in.name, d))
			} else {
				missed = append(missed, in.name)
			}
		}
		fmt.Fprintf(&b, "%-28s %8d %8d %8.1f%% %11.2f%% %8d  %s\n", n, rep.episodes, rep.fpEpisodes, 100*fp,
			100*float64(rep.firingSteps)/float64(rep.benign), len(missed), strings.Join(ttd, ", "))
		if fp >= 0.05 {
			t.Errorf("%s: false-positive rate %.1f%%, want < 5%%", n, 100*fp)
		}
		if len(missed) > 0 {
			t.Errorf("%s missed %v", n, missed)
		}
	}
	fmt.Fprintf(&b, "\n%-24s %16s %22s %22s\n", "incident", "raw onsets", "transitions (before)", "notifications (after)")
	for _, in := range incidents {
		fmt.Fprintf(&b, "%-24s %16d %22d %22d\n", in.name, raw[in.name], before[in.name], after[in.name])
		if after[in.name] == 0 {
			t.Errorf("incident %s: no notification", in.name)
		}
		if after[in.name] > before[in.name] {
			t.Errorf("incident %s: %d notifications after grouping, more than the %d transitions", in.name, after[in.name], before[in.name])
		}
	}
	fmt.Fprintf(&b, "notifications outside incidents: %d\nbenign noise: %s\n", outside, strings.Join(benign, "; "))
	t.Log(b.String())
	if outside > 0 {
		t.Errorf("%d notifications outside the incidents", outside)
	}
}
