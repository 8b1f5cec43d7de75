package ui

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"image"
	"image/png"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/performance"
	"github.com/chromedp/chromedp"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/auth"
)

var update = flag.Bool("update", false, "rewrite docs/dashboard.png from the screenshot test")

// chromium returns the path of a Chromium (or Chrome) binary: $SEMPROP_CHROMIUM,
// or the first of the usual names on $PATH; the test is skipped without one.
func chromium(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("SEMPROP_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless_shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium binary found (apt-get install chromium, or set SEMPROP_CHROMIUM): the dashboard's browser tests need one")
	return ""
}

// browser starts a headless Chromium for the test and returns its tab's
// context; the browser is stopped at cleanup.
func browser(t testing.TB) context.Context {
	t.Helper()
	path := chromium(t)
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // root in CI
		chromedp.WindowSize(1400, 1300),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("force-device-scale-factor", "1"),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		acancel()
	})
	// Start the browser now (the first call's context must not time out:
	// it is the browser's).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium %s: %v", path, err)
	}
	return ctx
}

// run runs actions with a deadline.
func run(t testing.TB, ctx context.Context, d time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	rctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if err := chromedp.Do(rctx, steps...); err != nil {
		t.Fatal(err)
	}
}

// value runs one action that returns a value, with a deadline.
func value[T any](t testing.TB, ctx context.Context, d time.Duration, a chromedp.Action[T]) T {
	t.Helper()
	rctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	v, err := chromedp.Run(rctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// eval evaluates a JavaScript expression in the page, awaiting a promise,
// and decodes its value into out.
func eval[T any](t testing.TB, ctx context.Context, expr string, out *T) {
	t.Helper()
	*out = value(t, ctx, 60*time.Second, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// waitJS polls a JavaScript condition until it is true.
func waitJS(t testing.TB, ctx context.Context, cond string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		var ok bool
		eval(t, ctx, "(() => { const live = (n) => __semprop.streams[n] && __semprop.streams[n].state === 'live'; return !!("+cond+"); })()", &ok)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			var state string
			eval(t, ctx, `JSON.stringify({mode: window.__semprop && __semprop.mode, ready: window.__semprop && __semprop.ready, conn: document.getElementById('conn').textContent, csp: window.__semprop && __semprop.cspViolations})`, &state)
			t.Fatalf("timed out after %s waiting for %s; page: %s", d, cond, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// open loads the dashboard and waits until its streams are live.
func open(t testing.TB, ctx context.Context, e *env) {
	t.Helper()
	run(t, ctx, 30*time.Second, chromedp.Navigate(e.url+"/ui/"))
	// The streams start at "now" when the server takes the request, before
	// it answers: once the page's streams are live, nothing is missed.
	waitJS(t, ctx, `window.__semprop && __semprop.ready && (
		(__semprop.mode === 'local' && live('agg')) || (__semprop.mode === 'server' && live('tail') && live('live'))) && live('insights')`, 20*time.Second)
}

// bothModes runs f with the page aggregating the stream itself (no
// analytics on the server) and with the server's analytics.
func bothModes(t *testing.T, f func(t *testing.T, analyticsOn bool)) {
	for _, mode := range []struct {
		name string
		on   bool
	}{{"local", false}, {"server", withAnalytics}} {
		t.Run(mode.name, func(t *testing.T) { f(t, mode.on) })
	}
}

// wantMode waits until the page has chosen where its aggregates come from.
func wantMode(t testing.TB, ctx context.Context, analyticsOn bool) {
	t.Helper()
	mode := "local"
	if analyticsOn {
		mode = "server"
	}
	waitJS(t, ctx, "__semprop.mode === '"+mode+"'", 10*time.Second)
}

func quantile(xs []float64, q float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// TestEventToPixelLatency publishes events one at a time with known
// times (the event's time, set when the daemon takes it) and reads, from
// the page's hook, when the frame after their tail row was drawn. It
// measures up to three rounds and keeps the best: other processes on the
// machine only ever add latency.
func TestEventToPixelLatency(t *testing.T) { bothModes(t, testEventToPixelLatency) }

func testEventToPixelLatency(t *testing.T, analyticsOn bool) {
	ctx := browser(t)
	e := newEnv(t, nil, DefaultConfig(), analyticsOn)
	open(t, ctx, e)
	wantMode(t, ctx, analyticsOn)
	limit := 100.0
	if raceEnabled {
		limit = 250 // the race detector slows the server several times
	}
	best := math.Inf(1)
	for round := range 3 {
		p99 := latencyRound(t, ctx, e, round, 100)
		best = min(best, p99)
		if best <= limit {
			break
		}
	}
	if best > limit {
		if why := timingUnchecked(); why != "" {
			t.Logf("event-to-pixel p99 = %.1f ms over the %.0f ms target, not failed: %s", best, limit, why)
			return
		}
		t.Errorf("event-to-pixel p99 = %.1f ms in the best of three rounds, want <= %.0f ms", best, limit)
	}
}

// latencyRound publishes n events, spaced 10 to 30 ms apart (not in step
// with the frames), and returns the p99 of their event-to-pixel latency.
func latencyRound(t *testing.T, ctx context.Context, e *env, round, n int) float64 {
	t.Helper()
	sent := make(map[string]time.Time, n)
	ids := make([]string, 0, n)
	pctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	before := mainThread(t, ctx)
	start := time.Now()
	for i := range n {
		id := fmt.Sprintf("lat-%d-%d", round, i)
		ev := &event.Event{Type: "fs.write", Subject: fmt.Sprintf("/lat/f%d", i), SourceID: id}
		ev.Context.Comm = "latency"
		ev.Context.SetBytes(100)
		if _, err := e.m.Publish(pctx, ev); err != nil {
			t.Fatal(err)
		}
		sent[id] = ev.Time // the daemon's clock when it took the event
		ids = append(ids, id)
		time.Sleep(time.Duration(10+i%3*10) * time.Millisecond)
	}
	list := "['" + strings.Join(ids, "','") + "']"
	waitJS(t, ctx, list+".every((id) => __semprop.shown.has(id))", 20*time.Second)
	// How busy the page's main thread was: the CPU time it used
	// (ThreadTime) against the wall time of its tasks (TaskDuration, which
	// counts the time the thread waited for a core). A task time far above
	// the CPU time means the latency went to waiting for a core, not to
	// the page's work.
	after := mainThread(t, ctx)
	elapsed := time.Since(start).Seconds()
	share := func(k string) float64 { return 100 * (after[k] - before[k]) / elapsed }
	// The page's clock and the server's are the same wall clock read by
	// two processes: measure how far apart they read it, and compare the
	// page's times with the server's on the server's clock.
	offset, rtt := pageClockOffset(t, ctx)
	var shown []float64
	eval(t, ctx, list+".map((id) => __semprop.shown.get(id))", &shown)
	lat := make([]float64, len(ids))
	for i, id := range ids {
		lat[i] = shown[i] - offset - float64(sent[id].UnixNano())/1e6
		if lat[i] < -rtt/2 {
			t.Errorf("event %s shown %.1f ms before it was published (clocks aligned within %.1f ms)", id, -lat[i], rtt/2)
		}
	}
	// Where the time goes: read by the worker, handed to the page, drawn.
	var timing []struct{ Read, Message, Drawn, Painted float64 }
	eval(t, ctx, list+".map((id) => __semprop.timing.get(id))", &timing)
	var read, msg, drawn, painted []float64
	for i, id := range ids {
		at := float64(sent[id].UnixNano())/1e6 + offset
		read = append(read, timing[i].Read-at)
		msg = append(msg, timing[i].Message-timing[i].Read)
		drawn = append(drawn, timing[i].Drawn-timing[i].Message)
		painted = append(painted, timing[i].Painted-timing[i].Drawn)
	}
	p50, p99, worst := quantile(lat, 0.5), quantile(lat, 0.99), slices.Max(lat)
	_, load := overloaded()
	var skew struct{ Skew, RTT float64 }
	eval(t, ctx, "({Skew: __semprop.workerSkew, RTT: __semprop.workerSkewRTT})", &skew)
	t.Logf("round %d: event-to-pixel latency over %d events: p50 %.1f ms, p99 %.1f ms, max %.1f ms (load average %.1f; page's main thread: CPU %.0f%%, tasks %.0f%% of the time; page clock %+.1f ms from the server's ±%.1f, worker clock %+.1f ms from the page's ±%.1f)",
		round, n, p50, p99, worst, load, share("ThreadTime"), share("TaskDuration"), offset, rtt/2, skew.Skew, skew.RTT/2)
	for _, st := range []struct {
		name string
		xs   []float64
	}{{"event time to worker read", read}, {"worker read to page message", msg}, {"message to DOM", drawn}, {"DOM to next frame", painted}} {
		t.Logf("  %s: p50 %.1f ms, p99 %.1f ms", st.name, quantile(st.xs, 0.5), quantile(st.xs, 0.99))
	}
	return p99
}

// pageClockOffset returns how far ahead of the test's clock the page's
// clock (performance.timeOrigin + performance.now()) reads, from the
// round trip of a few evaluations with the shortest one, and that round
// trip: the offset is known within half of it.
func pageClockOffset(t testing.TB, ctx context.Context) (offset, rtt float64) {
	t.Helper()
	rtt = math.Inf(1)
	for range 8 {
		var page float64
		t0 := time.Now()
		eval(t, ctx, "__semprop.now()", &page)
		d := time.Since(t0)
		if ms := float64(d.Microseconds()) / 1e3; ms < rtt {
			rtt = ms
			offset = page - float64(t0.Add(d/2).UnixNano())/1e6
		}
	}
	return offset, rtt
}

// overloaded reports whether the machine runs more than twice as many
// runnable tasks as it has cores (the one-minute load average), when
// timing bounds say more about the neighbours than about the page.
func overloaded() (bool, float64) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return false, 0
	}
	var load float64
	if _, err := fmt.Sscan(string(b), &load); err != nil {
		return false, 0
	}
	return load > 2*float64(goruntime.NumCPU()), load
}

// timingUnchecked says why a timing bound (event-to-pixel latency, frame
// time) is only reported, or "" when it is enforced: only with
// SEMPROP_UI_TIMING=strict, without the race detector and on a machine
// that is not overloaded. On a shared 2-core machine (CI) the browser and
// the server compete for the cores and the bounds flake, so by default
// they are measured and logged, not asserted (docs/dashboard.md has the
// numbers); the coalescing checks always run.
func timingUnchecked() string {
	if os.Getenv("SEMPROP_UI_TIMING") != "strict" {
		return "set SEMPROP_UI_TIMING=strict to enforce it"
	}
	if raceEnabled {
		return "the race detector's server takes the cores the browser needs"
	}
	if busy, load := overloaded(); busy {
		return fmt.Sprintf("the machine is overloaded (load average %.1f on %d cores)", load, goruntime.NumCPU())
	}
	return ""
}

// TestFrameTimeUnderBurst publishes about 100,000 events/s for three
// seconds while the page measures the time between its animation frames:
// coalescing keeps the main thread free, so frames keep coming.
func TestFrameTimeUnderBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("burst test in -short mode")
	}
	bothModes(t, testFrameTimeUnderBurst)
}

func testFrameTimeUnderBurst(t *testing.T, analyticsOn bool) {
	ctx := browser(t)
	e := newEnv(t, nil, DefaultConfig(), analyticsOn)
	open(t, ctx, e)
	wantMode(t, ctx, analyticsOn)

	const (
		rate     = 100_000
		seconds  = 3
		batch    = 2500
		workers  = 4
		interval = time.Second * batch * workers / rate // per worker
	)
	type frames struct {
		Frames    int     `json:"frames"`
		P50       float64 `json:"p50"`
		P99       float64 `json:"p99"`
		Max       float64 `json:"max"`
		LongTasks int     `json:"longTasks"`
		LongMax   float64 `json:"longMax"`
	}
	var (
		res     frames
		wg      sync.WaitGroup
		mu      sync.Mutex
		lastSeq uint64
		total   int
	)
	type counters struct {
		Updates, Renders int
		Work             struct{ MS, Events float64 }
	}
	var stats0, stats counters
	eval(t, ctx, "({Updates: __semprop.updates, Renders: __semprop.renders, Work: {MS: __semprop.work.ms, Events: __semprop.work.events}})", &stats0)
	before := mainThread(t, ctx)
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for b := 0; time.Since(start) < seconds*time.Second; b++ {
				evs := make([]*event.Event, batch)
				for i := range evs {
					ev := &event.Event{Type: []string{"fs.write", "fs.create", "fs.remove", "fs.rename"}[i%4],
						Subject: fmt.Sprintf("/burst/w%d/d%d/f%d", w, i%16, (b*batch+i)%5000)}
					ev.Context.Comm = []string{"rsync", "tar", "make"}[i%3]
					ev.Context.SetUID(uint32(1000 + i%3))
					ev.Context.SetBytes(4096)
					evs[i] = ev
				}
				if err := e.m.PublishBatch(pctx, evs); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				total += batch
				lastSeq = max(lastSeq, evs[batch-1].Seq)
				mu.Unlock()
				select {
				case <-tick.C:
				case <-pctx.Done():
					return
				}
			}
		})
	}
	eval(t, ctx, fmt.Sprintf("__semprop.measureFrames(%d)", seconds*1000+500), &res)
	wg.Wait()
	elapsed := time.Since(start)
	after := mainThread(t, ctx)
	t.Logf("the page's main thread during the burst: tasks %.0f ms (script %.0f ms, layout %.0f ms, style %.0f ms) in %s",
		1000*(after["TaskDuration"]-before["TaskDuration"]), 1000*(after["ScriptDuration"]-before["ScriptDuration"]),
		1000*(after["LayoutDuration"]-before["LayoutDuration"]), 1000*(after["RecalcStyleDuration"]-before["RecalcStyleDuration"]),
		elapsed.Round(time.Millisecond))
	t.Logf("published %d events in %s (%.0f events/s)", total, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds())
	t.Logf("frame time during the burst: %d frames, p50 %.1f ms, p99 %.1f ms, max %.1f ms; %d long tasks (max %.0f ms)",
		res.Frames, res.P50, res.P99, res.Max, res.LongTasks, res.LongMax)

	// The page keeps up: the newest event reaches the tail soon after the
	// burst, and the aggregates counted every event.
	t0 := time.Now()
	waitJS(t, ctx, fmt.Sprintf("__semprop.lastShown && __semprop.lastShown.seq >= %d", lastSeq), 30*time.Second)
	t.Logf("the last event of the burst was on screen %s after the burst ended", time.Since(t0).Round(time.Millisecond))
	eval(t, ctx, "({Updates: __semprop.updates, Renders: __semprop.renders, Work: {MS: __semprop.work.ms, Events: __semprop.work.events}})", &stats)
	t.Logf("the page got %d messages from its worker and drew %d times; the worker parsed %.0f SSE messages one by one in %.0f ms (%.1f µs each; a tail-only stream skips most unparsed)",
		stats.Updates-stats0.Updates, stats.Renders-stats0.Renders, stats.Work.Events-stats0.Work.Events, stats.Work.MS-stats0.Work.MS,
		1000*(stats.Work.MS-stats0.Work.MS)/max(1, stats.Work.Events-stats0.Work.Events))
	// The aggregates are posted at most every 50 ms, after the tail (and
	// later still on a loaded machine): wait for them, bounded.
	var counted int
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		eval(t, ctx, "__semprop.mode === 'local' ? __semprop.events : __semprop.tailReceived", &counted)
		if counted >= total || time.Now().After(deadline) {
			break
		}
	}
	if counted < total {
		t.Errorf("the page counted %d events of %d", counted, total)
	}
	// Coalescing, whatever the machine: the worker posts at most about one
	// message a frame, and the page draws at most once per message.
	secs := (elapsed + time.Since(t0)).Seconds()
	if perSec := float64(stats.Updates-stats0.Updates) / secs; perSec > 70 {
		t.Errorf("the worker posted %.0f messages/s during the burst, want <= 70 (one a frame)", perSec)
	}
	if stats.Renders-stats0.Renders > stats.Updates-stats0.Updates+int(secs*5)+5 {
		t.Errorf("%d renders for %d messages: the page draws more often than it is told", stats.Renders-stats0.Renders, stats.Updates-stats0.Updates)
	}
	// At 60 Hz a frame is 16.7 ms: the median frame must stay one or two
	// vsyncs long, and no frame may be as long as a second.
	if res.Frames < seconds*20 || res.P50 > 34 || res.Max > 1000 {
		if why := timingUnchecked(); why != "" {
			t.Logf("frame bound not checked: %s", why)
		} else {
			t.Errorf("frames under the burst: %+v; want >= %d frames, p50 <= 34 ms, max <= 1000 ms", res, seconds*20)
		}
	}
}

// mainThread returns the page's run-time metrics (Performance.getMetrics:
// durations in seconds of the renderer's main thread).
func mainThread(t testing.TB, ctx context.Context) map[string]float64 {
	t.Helper()
	res := value(t, ctx, 10*time.Second, func(ctx context.Context, tg *chromedp.Target) (performance.GetMetricsResult, error) {
		if _, err := cdp.Call(ctx, tg, performance.Enable, performance.EnableParams{}); err != nil {
			return performance.GetMetricsResult{}, err
		}
		return cdp.Call(ctx, tg, performance.GetMetrics, cdp.Empty{})
	})
	out := make(map[string]float64, len(res.Metrics))
	for _, m := range res.Metrics {
		out[m.Name] = m.Value
	}
	return out
}

// TestDashboardScreenshot renders the dashboard with traffic of several
// kinds and checks that every chart drew its lines and every panel has
// content; with -update it writes docs/dashboard.png.
func TestDashboardScreenshot(t *testing.T) { bothModes(t, testDashboardScreenshot) }

func testDashboardScreenshot(t *testing.T, analyticsOn bool) {
	ctx := browser(t)
	e := newEnv(t, nil, DefaultConfig(), analyticsOn)
	open(t, ctx, e)
	wantMode(t, ctx, analyticsOn)

	pctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// A durable consumer that reads nothing: the lag panel shows it grow.
	res, err := http.Post(e.url+"/v1/subscriptions", "application/json", strings.NewReader(`{"name":"indexer","type":"fs.>"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("create consumer: %s", res.Status)
	}
	// Six seconds of mixed traffic, varying in rate, and a rule match.
	for s := range 6 {
		for k := range 10 {
			n := 20 + 15*((s+k)%4)
			evs := e.publish(t, n, fmt.Sprintf("shot-%d-%d", s, k), []string{"/srv/data", "/home/ana/src", "/var/log"}[k%3])
			if k%4 == 0 {
				for _, ev := range evs[:3] {
					ev2 := &event.Event{Type: "fs.create", Subject: ev.Subject + ".tmp"}
					ev2.Context.Comm = "make"
					if _, err := e.m.Publish(pctx, ev2); err != nil {
						t.Fatal(err)
					}
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		if s == 2 {
			m := &event.Event{Type: "semprop.rule.match", Subject: "/srv/data", Data: []byte(`{"rule":"mass-write","key":"rsync","seqs":[1,2],"message":"rsync wrote 500 files under /srv/data in 1s"}`), DataContentType: "application/json"}
			m.SetAttr("rule", "mass-write")
			m.SetAttr("severity", "warning")
			if _, err := e.m.Publish(pctx, m); err != nil {
				t.Fatal(err)
			}
			in := &event.Event{Type: "semprop.insight.spike", Subject: "/srv/data", DataContentType: "application/json",
				Data: []byte(`{"kind":"spike","by":"comm@dir","key":"rsync@/srv/data","value":4812,"expected":1.2,"explanation":"rsync deleted 4,812 files under /srv/data in 1 min; usual is 0–3"}`)}
			if _, err := e.m.Publish(pctx, in); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitJS(t, ctx, "document.querySelectorAll('#top-path tbody tr').length >= 5 && document.querySelectorAll('#insights tbody tr').length >= 2", 10*time.Second)
	time.Sleep(1200 * time.Millisecond) // one more complete second on the charts

	for _, tc := range []struct {
		sel     string
		minLine int // coloured pixels: lines, fills, bars
	}{
		{"#chart-rate", 1000},
		{"#chart-bytes", 1000},
		{"#top-path", 50},
		{"#top-comm", 50},
	} {
		shot := value(t, ctx, 20*time.Second, chromedp.Screenshot(chromedp.CSS(tc.sel)))
		img, err := png.Decode(bytes.NewReader(shot))
		if err != nil {
			t.Fatalf("%s: decode screenshot: %v", tc.sel, err)
		}
		nonBG, line := countPixels(img)
		t.Logf("%s: %dx%d, %d non-background pixels, %d coloured", tc.sel, img.Bounds().Dx(), img.Bounds().Dy(), nonBG, line)
		if line < tc.minLine {
			t.Errorf("%s: %d coloured pixels, want >= %d (nothing drawn?)", tc.sel, line, tc.minLine)
		}
	}
	var rows struct {
		Tail, Insights   int
		Comm, UID        []string
		Capture, Cluster string
		CSP              []string
	}
	eval(t, ctx, `({Tail: document.querySelectorAll('#tail tbody tr').length,
		Comm: [...document.querySelectorAll('#top-comm tbody tr')].map((r) => r.cells[0].textContent),
		UID: [...document.querySelectorAll('#top-uid tbody tr')].map((r) => r.cells[0].textContent),
		Insights: document.querySelectorAll('#insights tbody tr').length,
		Capture: document.getElementById('capture').textContent,
		Cluster: document.getElementById('cluster-note').textContent,
		CSP: __semprop.cspViolations})`, &rows)
	for _, want := range []string{"rsync", "vim", "cp", "make"} {
		if !slices.Contains(rows.Comm, want) {
			t.Errorf("top processes %q lack %s", rows.Comm, want)
		}
	}
	for _, want := range []string{"1000", "1001"} {
		if !slices.Contains(rows.UID, want) {
			t.Errorf("top users %q lack %s", rows.UID, want)
		}
	}
	if rows.Tail < 50 || rows.Insights < 2 {
		t.Errorf("panels: %d tail rows, %d insights; want a full tail and 2 insights", rows.Tail, rows.Insights)
	}
	waitJS(t, ctx, "document.getElementById('lag').textContent.includes('consumer indexer')", 10*time.Second)
	if !strings.Contains(rows.Capture, "journal") || rows.Cluster != "not in a cluster" {
		t.Errorf("status panels: capture %q, cluster note %q", rows.Capture, rows.Cluster)
	}
	if len(rows.CSP) > 0 {
		t.Errorf("Content-Security-Policy violations: %q", rows.CSP)
	}
	full := value(t, ctx, 20*time.Second, chromedp.FullScreenshot(100))
	if *update && analyticsOn {
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "dashboard.png"), full, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// countPixels counts the pixels of img that differ from the panel's
// background, and the coloured ones (the series and bars: axes, grid
// and text are grey).
func countPixels(img image.Image) (nonBG, colour int) {
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			r8, g8, b8 := float64(r>>8), float64(g>>8), float64(bl>>8)
			if math.Abs(r8-0xf6)+math.Abs(g8-0xf7)+math.Abs(b8-0xf9) > 12 {
				nonBG++
			}
			if max(r8, g8, b8)-min(r8, g8, b8) > 60 {
				colour++
			}
		}
	}
	return nonBG, colour
}

// TestTokenLoginAndEscaping: with tokens configured the page asks for
// one, refuses a wrong one, works with the right one (kept in
// sessionStorage), and shows hostile file names as text.
func TestTokenLoginAndEscaping(t *testing.T) {
	const secret = "viewer-secret-0123456789"
	ctx := browser(t)
	e := newEnv(t, []auth.TokenSpec{{Name: "viewer", Token: secret, Scopes: []string{"subscribe:>"}}}, DefaultConfig(), withAnalytics)
	run(t, ctx, 30*time.Second, chromedp.Navigate(e.url+"/ui/"))
	waitJS(t, ctx, "!document.getElementById('login').hidden", 10*time.Second)
	// The login page renders: a form, not an empty box.
	shot := value(t, ctx, 20*time.Second, chromedp.Screenshot(chromedp.CSS("#login form")))
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatal(err)
	}
	nonBG, _ := countPixels(img)
	t.Logf("login form: %dx%d, %d non-background pixels", img.Bounds().Dx(), img.Bounds().Dy(), nonBG)
	if nonBG < 2000 {
		t.Errorf("login form: %d non-background pixels, want >= 2000 (text, field, button)", nonBG)
	}

	run(t, ctx, 10*time.Second,
		chromedp.SendKeys(chromedp.CSS("#token"), "wrong-token-0123456789"),
		chromedp.Click(chromedp.CSS("#login-form button")))
	waitJS(t, ctx, "!document.getElementById('login').hidden && document.getElementById('login-why').textContent.includes('refused')", 10*time.Second)

	run(t, ctx, 10*time.Second,
		chromedp.SendKeys(chromedp.CSS("#token"), secret),
		chromedp.Click(chromedp.CSS("#login-form button")))
	waitJS(t, ctx, "document.getElementById('login').hidden && __semprop.ready", 10*time.Second)
	time.Sleep(200 * time.Millisecond)

	hostile := `/data/<img src=x onerror="window.__pwned=1">.txt`
	ev := &event.Event{Type: "fs.write", Subject: hostile, SourceID: "hostile-1"}
	ev.Context.Comm = "<b>bold</b>"
	pctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.m.Publish(pctx, ev); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "__semprop.shown.has('hostile-1')", 10*time.Second)
	var got struct {
		Subject, Comm, Stored string
		Pwned, Imgs           int
	}
	eval(t, ctx, `({Subject: document.querySelector('#tail tbody tr td:nth-child(4)').textContent,
		Comm: document.querySelector('#tail tbody tr td:nth-child(5)').textContent,
		Stored: sessionStorage.getItem('semprop.token'),
		Pwned: window.__pwned ? 1 : 0,
		Imgs: document.querySelectorAll('#tail img, #tail b').length})`, &got)
	if got.Subject != hostile || got.Comm != "<b>bold</b>" || got.Pwned != 0 || got.Imgs != 0 {
		t.Errorf("hostile names: %+v; want them as text, nothing run or parsed", got)
	}
	if got.Stored != secret {
		t.Errorf("sessionStorage token = %q, want the one typed", got.Stored)
	}
	// A subscriber is not admin: the status panels say so instead of
	// failing.
	waitJS(t, ctx, "document.getElementById('capture-note').textContent === 'needs an admin token'", 10*time.Second)
}

// TestTailFilter: the tail's type and path filters are the API's
// selectors (evaluated by the server on what the token may see); a bad
// one is reported next to the form.
func TestTailFilter(t *testing.T) {
	ctx := browser(t)
	e := newEnv(t, nil, DefaultConfig())
	open(t, ctx, e)
	run(t, ctx, 10*time.Second,
		chromedp.SendKeys(chromedp.CSS("#tail-type"), "fs.create"),
		chromedp.SendKeys(chromedp.CSS("#tail-path"), "/keep/**"),
		chromedp.Click(chromedp.CSS("#tail-form button")))
	waitJS(t, ctx, "live('tail')", 10*time.Second) // the filtered stream starts at "now"
	pctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var evs []*event.Event
	for i := range 30 {
		typ := []string{"fs.create", "fs.write"}[i%2]
		dir := []string{"/keep", "/drop"}[i/2%2]
		ev := &event.Event{Type: typ, Subject: fmt.Sprintf("%s/f%d", dir, i), SourceID: fmt.Sprintf("flt-%d", i)}
		evs = append(evs, ev)
	}
	if err := e.m.PublishBatch(pctx, evs); err != nil {
		t.Fatal(err)
	}
	// The last matching event is flt-28 (fs.create under /keep).
	waitJS(t, ctx, "__semprop.shown.has('flt-28')", 10*time.Second)
	time.Sleep(300 * time.Millisecond)
	var rows []string
	eval(t, ctx, `[...document.querySelectorAll('#tail tbody tr')].map((r) => r.cells[2].textContent + ' ' + r.cells[3].textContent)`, &rows)
	var want []string
	for i := 28; i >= 0; i-- {
		if i%2 == 0 && i/2%2 == 0 {
			want = append(want, fmt.Sprintf("fs.create /keep/f%d", i))
		}
	}
	if !slices.Equal(rows, want) {
		t.Errorf("filtered tail:\n%q\nwant\n%q", rows, want)
	}

	run(t, ctx, 10*time.Second,
		chromedp.SetValue(chromedp.CSS("#tail-path"), "re:(["),
		chromedp.Click(chromedp.CSS("#tail-form button")))
	waitJS(t, ctx, "document.getElementById('tail-error').textContent !== ''", 10*time.Second)
}

// TestAnalyticsForbiddenFallsBack: a token the analytics engine has no
// view for (403 on /v1/analytics/live) still gets a working page, with
// the aggregates computed in the page from what the token may see.
func TestAnalyticsForbiddenFallsBack(t *testing.T) {
	const secret = "late-secret-0123456789"
	ctx := browser(t)
	e := newEnv(t, []auth.TokenSpec{
		{Name: "viewer", Token: "viewer-secret-0123456789", Scopes: []string{"subscribe:>"}},
		{Name: "late-viewer", Token: secret, Scopes: []string{"subscribe:>"}},
	}, DefaultConfig(), withAnalytics)
	run(t, ctx, 30*time.Second, chromedp.Navigate(e.url+"/ui/"))
	waitJS(t, ctx, "!document.getElementById('login').hidden", 10*time.Second)
	run(t, ctx, 10*time.Second,
		chromedp.SendKeys(chromedp.CSS("#token"), secret),
		chromedp.Click(chromedp.CSS("#login-form button")))
	wantMode(t, ctx, false)
	waitJS(t, ctx, "__semprop.ready", 10*time.Second)
	time.Sleep(300 * time.Millisecond)
	e.publish(t, 30, "late", "/srv/late")
	waitJS(t, ctx, "document.querySelectorAll('#top-comm tbody tr').length === 3", 10*time.Second)
	var conn string
	eval(t, ctx, "document.getElementById('conn').textContent", &conn)
	if conn != "live" {
		t.Errorf("connection pill %q, want live (a 403 from analytics is no outage)", conn)
	}
}

// TestHiddenPageStaysBounded: while no frames come (a hidden tab: the
// browser stops requestAnimationFrame), what waits to be drawn stays
// bounded however many events arrive.
func TestHiddenPageStaysBounded(t *testing.T) {
	ctx := browser(t)
	e := newEnv(t, nil, DefaultConfig())
	open(t, ctx, e)
	var ok bool
	eval(t, ctx, "window.requestAnimationFrame = () => 0, true", &ok)
	for i := range 20 {
		e.publish(t, 500, fmt.Sprintf("hidden-%d", i), "/hidden")
		time.Sleep(20 * time.Millisecond)
	}
	waitJS(t, ctx, "__semprop.updates > 10", 10*time.Second)
	time.Sleep(500 * time.Millisecond)
	var sizes struct{ Tail, Insights int }
	eval(t, ctx, "(() => { const s = __semprop.pendingSizes(); return {Tail: s.tail, Insights: s.insights}; })()", &sizes)
	if sizes.Tail > 100 || sizes.Insights > 100 {
		t.Errorf("waiting to be drawn after 10,000 events with no frames: %+v; want at most 100 each", sizes)
	}
}
