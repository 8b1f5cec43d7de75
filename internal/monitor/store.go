package monitor

import (
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// Sample is one value of a series at a time.
type Sample struct {
	T time.Time `json:"t"`
	V float64   `json:"v"`
}

// Series is a named, labelled sequence of samples in time order.
type Series struct {
	Name    string   `json:"name"`
	Labels  Labels   `json:"labels"`
	Samples []Sample `json:"samples"`
}

// Store keeps the recent samples of the metrics the alert rules and
// health checks read: a window of Retention per series, oldest first.
// Histograms are stored as Prometheus exposes them (NAME_bucket with le,
// NAME_sum, NAME_count); summaries as NAME_sum and NAME_count. It is safe
// for concurrent use.
type Store struct {
	retention time.Duration
	keep      func(name string) bool // nil keeps every metric

	mu     sync.Mutex
	series map[string]map[string]*Series // name → labels key → series
	last   time.Time                     // time of the newest sample added
}

// NewStore returns a Store keeping retention of history (at least one
// minute). keep, if not nil, selects the metric names stored.
func NewStore(retention time.Duration, keep func(name string) bool) *Store {
	return &Store{retention: max(retention, time.Minute), keep: keep, series: make(map[string]map[string]*Series)}
}

// setKeep changes which metric names are stored from now on.
func (s *Store) setKeep(keep func(name string) bool) {
	s.mu.Lock()
	s.keep = keep
	s.mu.Unlock()
}

// Append adds one sample. Samples older than the series' newest are
// dropped; so are samples that fall out of the retention window.
func (s *Store) Append(name string, l Labels, t time.Time, v float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keep != nil && !s.keep(name) {
		return
	}
	s.appendLocked(name, l, t, v)
}

func (s *Store) appendLocked(name string, l Labels, t time.Time, v float64) {
	byKey := s.series[name]
	if byKey == nil {
		byKey = make(map[string]*Series)
		s.series[name] = byKey
	}
	k := l.key()
	sr := byKey[k]
	if sr == nil {
		sr = &Series{Name: name, Labels: l.Clone()}
		byKey[k] = sr
	}
	if n := len(sr.Samples); n > 0 && !t.After(sr.Samples[n-1].T) {
		return
	}
	sr.Samples = append(sr.Samples, Sample{T: t, V: v})
	cut := t.Add(-s.retention)
	i := 0
	for i < len(sr.Samples) && sr.Samples[i].T.Before(cut) {
		i++
	}
	if i > 0 {
		sr.Samples = append(sr.Samples[:0], sr.Samples[i:]...)
	}
	if t.After(s.last) {
		s.last = t
	}
}

// AddFamilies stores the metric families of one gather at time t. Series
// not present in this gather get no sample, so they go stale: selectors
// see only series with a sample within their lookback.
func (s *Store) AddFamilies(t time.Time, fams []*dto.MetricFamily) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range fams {
		name := f.GetName()
		for _, m := range f.GetMetric() {
			l := make(Labels, len(m.GetLabel()))
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			add := func(n string, ll Labels, v float64) {
				if s.keep == nil || s.keep(n) {
					s.appendLocked(n, ll, t, v)
				}
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				add(name, l, m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				add(name, l, m.GetGauge().GetValue())
			case dto.MetricType_UNTYPED:
				add(name, l, m.GetUntyped().GetValue())
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				add(name+"_count", l, float64(h.GetSampleCount()))
				add(name+"_sum", l, h.GetSampleSum())
				for _, b := range h.GetBucket() {
					bl := l.Clone()
					bl["le"] = formatLe(b.GetUpperBound())
					add(name+"_bucket", bl, float64(b.GetCumulativeCount()))
				}
				bl := l.Clone()
				bl["le"] = "+Inf"
				add(name+"_bucket", bl, float64(h.GetSampleCount()))
			case dto.MetricType_SUMMARY:
				add(name+"_count", l, float64(m.GetSummary().GetSampleCount()))
				add(name+"_sum", l, m.GetSummary().GetSampleSum())
			}
		}
	}
}

func formatLe(b float64) string {
	if math.IsInf(b, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(b, 'g', -1, 64)
}

// Select returns copies of the series named name whose labels satisfy ms,
// with their samples in (from, to]. Series without a sample in the range
// are left out.
func (s *Store) Select(name string, ms []Matcher, from, to time.Time) []Series {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Series
	for _, sr := range s.series[name] {
		if !matchAll(ms, sr.Labels) {
			continue
		}
		lo, _ := slices.BinarySearchFunc(sr.Samples, from, func(x Sample, t time.Time) int {
			if x.T.After(t) {
				return 1
			}
			return -1
		})
		hi, _ := slices.BinarySearchFunc(sr.Samples, to, func(x Sample, t time.Time) int {
			if x.T.After(t) {
				return 1
			}
			return -1
		})
		if lo >= hi {
			continue
		}
		out = append(out, Series{Name: name, Labels: sr.Labels, Samples: slices.Clone(sr.Samples[lo:hi])})
	}
	return out
}

// Names returns the metric names held.
func (s *Store) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.series))
	for n := range s.series {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
