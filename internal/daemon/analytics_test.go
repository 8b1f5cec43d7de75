package daemon

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAnalyticsAndDashboard: a daemon on the defaults serves the
// dashboard and aggregates what is published; deleting its rollups and
// restarting rebuilds them from the journal; analytics can be turned off.
func TestAnalyticsAndDashboard(t *testing.T) {
	c := defaults(t)
	_, url, stop := startStop(t, c)
	for i := range 30 {
		body := fmt.Sprintf(`{"specversion":"1.0","id":"%d","source":"/t","type":"app.job","subject":"/srv/data/f%d"}`, i, i%3)
		resp, err := http.Post(url+"/v1/events", "application/cloudevents+json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	top := func(url string) map[string]int64 {
		var got struct {
			Items []struct {
				Key   string `json:"key"`
				Count int64  `json:"count"`
			} `json:"items"`
		}
		getJSON(t, url+"/v1/analytics/top?by=path&window=5m&k=10", &got)
		m := map[string]int64{}
		for _, it := range got.Items {
			m[it.Key] = it.Count
		}
		return m
	}
	want := map[string]int64{"/srv/data/f0": 10, "/srv/data/f1": 10, "/srv/data/f2": 10}
	waitTop := func(url string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		var got map[string]int64
		for time.Now().Before(deadline) {
			if got = top(url); fmt.Sprint(got) == fmt.Sprint(want) {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("top paths %v, want %v", got, want)
	}
	waitTop(url)
	resp, err := http.Get(url + "/ui/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "<html") {
		t.Fatalf("GET /ui/: %d %.80q", resp.StatusCode, page)
	}
	// An open live feed does not hold the shutdown.
	live, err := http.Get(url + "/v1/analytics/live")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Body.Close()
	if _, err := live.Body.Read(make([]byte, 1)); err != nil {
		t.Fatalf("live feed: %v", err)
	}
	began := time.Now()
	stop()
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("stopping with a live feed open took %v", took)
	}

	// The rollups are derived data: gone, they come back from the journal.
	if err := os.RemoveAll(filepath.Join(c.Data, "analytics")); err != nil {
		t.Fatal(err)
	}
	_, url = startT(t, c)
	waitTop(url)

	c2 := defaults(t)
	c2.Analytics.Enabled = false
	c2.UI.Enabled = false
	_, url2 := startT(t, c2)
	for _, p := range []string{"/v1/analytics/top?by=path", "/ui/"} {
		resp, err := http.Get(url2 + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("GET %s with analytics and ui off: %d, want 404", p, resp.StatusCode)
		}
	}
}
