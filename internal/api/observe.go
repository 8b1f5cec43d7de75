package api

import (
	"bufio"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// httpMetrics counts requests by route pattern, method and status, times
// non-streaming ones, and shows the request-body bytes held.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer, body *byteBudget) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "semprop_http_requests_total", Help: "HTTP requests by route, method and status.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "semprop_http_request_duration_seconds", Help: "Time to answer a non-streaming HTTP request, by route, method and status.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 4, 10),
		}, []string{"route", "method", "code"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "semprop_http_body_bytes_inflight", Help: "Request-body bytes reserved by requests being served.",
			}, func() float64 { return float64(body.inUse()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "semprop_http_body_bytes_inflight_max", Help: "The most request-body bytes ever reserved at once.",
			}, func() float64 { return float64(body.high.Load()) }),
		)
	}
	return m
}

// statusWriter records the status code. It keeps Flush and Hijack working
// for SSE and WebSocket handlers.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.code == 0 {
		w.code = http.StatusSwitchingProtocols
	}
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (m *httpMetrics) observe(route, method string, code int, start time.Time, streaming bool) {
	if code == 0 {
		code = http.StatusOK
	}
	c := strconv.Itoa(code)
	m.requests.WithLabelValues(route, method, c).Inc()
	if !streaming {
		m.duration.WithLabelValues(route, method, c).Observe(time.Since(start).Seconds())
	}
}
