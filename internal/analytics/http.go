package analytics

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/semprop/semprop/internal/api"
	"github.com/semprop/semprop/internal/auth"
)

// Register installs the analytics routes on srv, each for callers with a
// subscribe scope (see api.go for the routes and bodies).
func (e *Engine) Register(srv *api.Server) {
	srv.HandleAccess("GET /v1/analytics/series", api.AccessSubscribe, http.HandlerFunc(e.serveSeries))
	srv.HandleAccess("GET /v1/analytics/top", api.AccessSubscribe, http.HandlerFunc(e.serveTop))
	srv.HandleAccess("GET /v1/analytics/insights", api.AccessSubscribe, http.HandlerFunc(e.serveInsights))
	srv.HandleAccess("GET /v1/analytics/live", api.AccessSubscribe, http.HandlerFunc(e.serveLive))
	srv.HandleAccess("GET /v1/analytics/summary", api.AccessSubscribe, http.HandlerFunc(e.serveSummary))
	srv.HandleAccess("GET /v1/analytics/sessions", api.AccessSubscribe, http.HandlerFunc(e.serveSessions))
}

// windowParam parses window= (default 5m, 1s to 1h).
func windowParam(w http.ResponseWriter, r *http.Request) (time.Duration, bool) {
	s := r.URL.Query().Get("window")
	if s == "" {
		return 5 * time.Minute, true
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Second || d > maxWindow*time.Second {
		badParam(w, "window", fmt.Sprintf("window %q: want a duration from 1s to 1h", s))
		return 0, false
	}
	return d.Truncate(time.Second), true
}

func (e *Engine) serveSummary(w http.ResponseWriter, r *http.Request) {
	win, ok := windowParam(w, r)
	if !ok {
		return
	}
	s, err := e.WindowSummary(api.Caller(r), win)
	if err != nil {
		e.viewErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s)
}

func (e *Engine) serveSessions(w http.ResponseWriter, r *http.Request) {
	ss, err := e.Sessions(api.Caller(r))
	if err != nil {
		e.viewErr(w, err)
		return
	}
	sort.Slice(ss, func(i, j int) bool { return ss[i].End > ss[j].End })
	writeJSON(w, http.StatusOK, SessionsResponse{Items: ss})
}

type apiError struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func badParam(w http.ResponseWriter, field, msg string) {
	writeJSON(w, http.StatusBadRequest, apiError{Error: "analytics: " + msg, Field: field})
}

func (e *Engine) viewErr(w http.ResponseWriter, err error) {
	writeJSON(w, http.StatusForbidden, apiError{Error: err.Error()})
}

// parseTime parses RFC 3339 or Unix seconds.
func parseTime(s string) (time.Time, bool) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0), true
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

func intParam(r *http.Request, name string, def, lo, hi int) (int, bool) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, false
	}
	return n, true
}

func (e *Engine) serveTop(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	by := q.Get("by")
	if by == "" {
		by = "path"
	}
	if _, ok := parseDim(by); !ok && by != "path" {
		badParam(w, "by", fmt.Sprintf("by %q: want path, comm, uid, dir or type", by))
		return
	}
	win, ok := windowParam(w, r)
	if !ok {
		return
	}
	k, ok := intParam(r, "k", 10, 1, 100)
	if !ok {
		badParam(w, "k", "k: want 1 to 100")
		return
	}
	resp, err := e.Top(api.Caller(r), by, win, k)
	if err != nil {
		e.viewErr(w, err)
		return
	}
	if s := q.Get("window"); s != "" {
		resp.Window = s
	} else {
		resp.Window = "5m"
	}
	writeJSON(w, http.StatusOK, resp)
}

func (e *Engine) serveInsights(w http.ResponseWriter, r *http.Request) {
	since := e.now().Add(-24 * time.Hour)
	if s := r.URL.Query().Get("since"); s != "" {
		t, ok := parseTime(s)
		if !ok {
			badParam(w, "since", fmt.Sprintf("since %q: want RFC 3339 or Unix seconds", s))
			return
		}
		since = t
	}
	limit, ok := intParam(r, "limit", 100, 1, 1000)
	if !ok {
		badParam(w, "limit", "limit: want 1 to 1000")
		return
	}
	p := api.Caller(r)
	if _, err := e.viewFor(p); err != nil {
		e.viewErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, InsightsResponse{Items: e.Insights(p, since, limit)})
}

// maxBuckets bounds the buckets of one series request.
const maxBuckets = 3600

func (e *Engine) serveSeries(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	metric := q.Get("metric")
	if metric == "" {
		metric = "events"
	}
	if metric != "events" && metric != "bytes" {
		badParam(w, "metric", fmt.Sprintf("metric %q: want events or bytes", metric))
		return
	}
	by := q.Get("by")
	if by == "" {
		by = "type"
	}
	if _, ok := parseDim(by); !ok {
		badParam(w, "by", fmt.Sprintf("by %q: want type, comm, uid or dir", by))
		return
	}
	step := q.Get("step")
	if step == "" {
		step = "1m"
	}
	res := -1
	for i, n := range resNames {
		if n == step {
			res = i
		}
	}
	if res < 0 {
		badParam(w, "step", fmt.Sprintf("step %q: want 1s, 1m or 1h", step))
		return
	}
	to := e.now()
	if s := q.Get("to"); s != "" {
		t, ok := parseTime(s)
		if !ok {
			badParam(w, "to", fmt.Sprintf("to %q: want RFC 3339 or Unix seconds", s))
			return
		}
		to = t
	}
	from := to.Add(-[nRes]time.Duration{5 * time.Minute, time.Hour, 7 * 24 * time.Hour}[res])
	if s := q.Get("from"); s != "" {
		t, ok := parseTime(s)
		if !ok {
			badParam(w, "from", fmt.Sprintf("from %q: want RFC 3339 or Unix seconds", s))
			return
		}
		from = t
	}
	k, ok := intParam(r, "k", 10, 1, 100)
	if !ok {
		badParam(w, "k", "k: want 1 to 100")
		return
	}
	stepS := resSeconds[res]
	f := from.Unix() - mod(from.Unix(), stepS)
	// Buckets starting before to; by default up to now, the current
	// (open) bucket included.
	t := to.Unix()
	if q.Get("to") == "" {
		t++
	}
	if m := mod(t, stepS); m != 0 {
		t += stepS - m
	}
	if t <= f {
		badParam(w, "from", "from: must be before to")
		return
	}
	if (t-f)/stepS > maxBuckets {
		badParam(w, "from", fmt.Sprintf("the range holds %d buckets of %s: at most %d", (t-f)/stepS, step, maxBuckets))
		return
	}
	resp, err := e.Series(api.Caller(r), metric, by, res, f, t, k)
	if err != nil {
		if errors.Is(err, ErrNoView) {
			e.viewErr(w, err)
			return
		}
		writeJSON(w, http.StatusInternalServerError, apiError{Error: "analytics: the history is unavailable"})
		e.log.Warn("analytics: series", "err", err)
		return
	}
	resp.Step = step
	writeJSON(w, http.StatusOK, resp)
}

// Series returns the rollups of resolution res (0: 1s, 1: 1m, 2: 1h) in
// [from, to) (Unix seconds aligned to the step) by one dimension, the k
// largest keys and "(other)", as p may see them. The buckets still open
// come from memory, so the newest point is there before it is stored.
func (e *Engine) Series(p *auth.Principal, metric, by string, res int, from, to int64, k int) (SeriesResponse, error) {
	dim, ok := parseDim(by)
	if !ok {
		return SeriesResponse{}, fmt.Errorf("%w: by %q", errParam, by)
	}
	e.mu.Lock()
	v, err := e.viewFor(p)
	st := e.stores[v]
	e.mu.Unlock()
	if err != nil {
		return SeriesResponse{}, err
	}
	stepS := resSeconds[res]
	n := int((to - from) / stepS)
	resp := SeriesResponse{Metric: metric, By: by, Step: resNames[res], From: from, To: to, Times: make([]int64, n), Series: []Series{}}
	for i := range resp.Times {
		resp.Times[i] = from + int64(i)*stepS
	}
	var rs []*rollup
	var persisted int64 = -1
	if st != nil {
		// Read without the engine's lock: segments are append-only and a
		// torn end is skipped.
		rs, err = st.readDims(res, from, to, 1<<dim)
		if err != nil {
			return SeriesResponse{}, err
		}
		if o := st.oldest(res); o < 0 || from < o {
			resp.Partial = from < e.wmStart(res, o)
		}
	}
	// The open buckets, from memory.
	e.mu.Lock()
	if st != nil {
		persisted = st.state.Persisted[res]
	}
	rs = append(rs, v.openRollups(res, from, to, persisted)...)
	e.mu.Unlock()

	vals := make(map[string][]int64)
	totals := make(map[string]int64)
	for _, r := range rs {
		i := int((r.start - from) / stepS)
		if i < 0 || i >= n {
			continue
		}
		for _, it := range r.items {
			if int(it.dim) != dim {
				continue
			}
			x := it.count
			if metric == "bytes" {
				x = it.bytes
			}
			a, ok := vals[it.key]
			if !ok {
				a = make([]int64, n)
				vals[it.key] = a
			}
			a[i] += x
			totals[it.key] += x
		}
	}
	keys := make([]string, 0, len(vals))
	for key := range vals {
		keys = append(keys, key)
	}
	sort.Slice(keys, func(i, j int) bool {
		if totals[keys[i]] != totals[keys[j]] {
			return totals[keys[i]] > totals[keys[j]]
		}
		return keys[i] < keys[j]
	})
	var other []int64
	for i, key := range keys {
		if i < k && key != otherKey {
			resp.Series = append(resp.Series, Series{Key: key, Values: vals[key]})
			continue
		}
		if other == nil {
			other = make([]int64, n)
		}
		for j, x := range vals[key] {
			other[j] += x
		}
	}
	if other != nil {
		resp.Series = append(resp.Series, Series{Key: otherKey, Values: other})
	}
	return resp, nil
}

// wmStart: the partial flag needs the oldest stored bucket; without any
// stored bucket, everything before the engine's first event is missing.
func (e *Engine) wmStart(res int, oldest int64) int64 {
	if oldest >= 0 {
		return oldest
	}
	return 0
}

// openRollups returns the rollups of v's panes of res in [from, to) that
// are not in the store (started after persisted).
func (v *view) openRollups(res int, from, to, persisted int64) []*rollup {
	var out []*rollup
	switch res {
	case res1s:
		for _, p := range v.sec {
			if p.count > 0 && p.start > persisted && p.start >= from && p.start < to {
				out = append(out, rollupOf(res, p, false))
			}
		}
	case res1m:
		for _, r := range v.openMinutes() {
			if r.start > persisted && r.start >= from && r.start < to {
				out = append(out, r)
			}
		}
	case res1h:
		// The open hours: the closed minutes of the current hour (not yet
		// an hour rollup) plus the open minute panes.
		byHour := make(map[int64]*rollup)
		at := func(h int64) *rollup {
			r, ok := byHour[h]
			if !ok {
				r = &rollup{res: res1h, start: h}
				byHour[h] = r
			}
			return r
		}
		if v.hourStart >= 0 {
			r := at(v.hourStart)
			for k, c := range v.hour {
				r.items = append(r.items, rollupItem{dim: k.dim, key: k.key, count: c.count, bytes: c.bytes})
			}
			r.count, r.bytes = v.hourTot.count, v.hourTot.bytes
		}
		for _, m := range v.openMinutes() {
			r := at(m.start - mod(m.start, 3600))
			r.count += m.count
			r.bytes += m.bytes
			r.items = append(r.items, m.items...)
		}
		for h, r := range byHour {
			if r.count > 0 && h > persisted && h >= from && h < to {
				out = append(out, r)
			}
		}
	}
	return out
}

// liveInterval is the shortest time between two live frames.
const liveInterval = 50 * time.Millisecond

// liveHeartbeat is the interval of keep-alive comments on a quiet stream.
const liveHeartbeat = 15 * time.Second

func (e *Engine) serveLive(w http.ResponseWriter, r *http.Request) {
	p := api.Caller(r)
	if _, err := e.viewFor(p); err != nil {
		e.viewErr(w, err)
		return
	}
	release, ok := p.OpenStream()
	if !ok {
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusTooManyRequests, apiError{Error: "analytics: too many open streams for this token"})
		return
	}
	defer release()
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriter(w)
	ctx := r.Context()
	hb := time.NewTicker(liveHeartbeat)
	defer hb.Stop()
	var last time.Time
	var lastSeq uint64 = 1<<64 - 1
	var lastSecond int64 = -1
	for {
		ch := e.changedCh()
		if wait := liveInterval - time.Since(last); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		f, err := e.Live(p)
		if err != nil {
			return
		}
		if f.Seq != lastSeq || f.Second != lastSecond {
			lastSeq, lastSecond = f.Seq, f.Second
			last = time.Now()
			b, _ := json.Marshal(f)
			bw.WriteString("event: frame\ndata: ")
			bw.Write(b)
			bw.WriteString("\n\n")
			if bw.Flush() != nil || rc.Flush() != nil {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
		case <-hb.C:
			bw.WriteString(": heartbeat\n\n")
			if bw.Flush() != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

// liveRateWindow is the span of a live frame's rates, in seconds.
const liveRateWindow = 5

// Live returns the live frame p may see now.
func (e *Engine) Live(p *auth.Principal) (LiveFrame, error) {
	e.mu.Lock()
	v, err := e.viewFor(p)
	if err != nil {
		e.mu.Unlock()
		return LiveFrame{}, err
	}
	f := LiveFrame{Time: e.now().UnixMilli(), Seq: e.lastSeq, EventTime: e.lastTime / 1e6, RateWindow: liveRateWindow * 1000,
		Rates: map[string]float64{}, SecondCounts: map[string]int64{}, BytesTotal: v.bytes, Top: map[string][]TopItem{}}
	if e.maxSec >= 0 {
		// The rates end at the newest event second or, on a quiet stream,
		// at the wall clock: they fall to 0 when the events stop.
		end := max(e.maxSec, e.now().Unix()-1)
		f.Second = end - 1
		var bytes int64
		for _, pn := range v.sec {
			if pn.start >= end-liveRateWindow && pn.start < end {
				for key, c := range pn.dims[dimType] {
					f.Rates[key] += float64(c.count) / liveRateWindow
				}
				f.Rate += float64(pn.count) / liveRateWindow
				bytes += pn.bytes
			}
			if pn.start == f.Second {
				for key, c := range pn.dims[dimType] {
					f.SecondCounts[key] = c.count
				}
			}
		}
		f.BytesPerSec = float64(bytes) / liveRateWindow
	}
	f.Top = v.liveTop(e.now())
	e.mu.Unlock()
	f.Insights = e.Insights(p, time.Time{}, 20)
	return f, nil
}

// liveTop returns the last minute's top lists, computed at most once a
// second per view (the path merge is the costly part of a frame).
func (v *view) liveTop(now time.Time) map[string][]TopItem {
	if v.top != nil && now.Sub(v.topAt) < time.Second && v.topSec == v.maxSec {
		return v.top
	}
	top := map[string][]TopItem{}
	conv := func(kcs []keyCount) []TopItem {
		out := make([]TopItem, 0, len(kcs))
		for _, kc := range kcs {
			out = append(out, TopItem{Key: kc.key, Count: kc.count, Bytes: kc.bytes, Error: kc.err})
		}
		return out
	}
	top["path"] = conv(v.topPaths(60, 10))
	top["comm"] = conv(v.topDim(dimComm, 60, 10))
	top["uid"] = conv(v.topDim(dimUID, 60, 10))
	top["dir"] = conv(v.topDim(dimDir, 60, 10))
	v.top, v.topAt, v.topSec = top, now, v.maxSec
	return top
}
