package propagate

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/semprop/semprop/internal/metrics"
)

// Labels of the per-subscription series: a named subscription is
// {subscription="NAME", id=""}, an anonymous one {subscription="", id="N"}
// with its number, which it keeps for its whole life and which is never
// reused. Either way a series stays put from scrape to scrape.
var subLabels = []string{"subscription", "id"}

var (
	descPublished   = prometheus.NewDesc("semprop_published_events_total", "Events published (sequenced and durable).", nil, nil)
	descPublishTime = prometheus.NewDesc("semprop_publish_duration_seconds", "Time from a Publish or PublishBatch call to its events being durable (one observation per call).", nil, nil)
	descLatency     = prometheus.NewDesc("semprop_delivery_latency_seconds", "Time from sequencing to a live subscriber taking the event (one delivery in 16 is timed).", nil, nil)

	descSubs      = prometheus.NewDesc("semprop_subscriptions", "Live subscriptions open.", nil, nil)
	descDelivered = prometheus.NewDesc("semprop_subscription_delivered_total", "Events taken by a live subscriber.", subLabels, nil)
	descMatched   = prometheus.NewDesc("semprop_subscription_matched_total", "Events that matched a live subscription (queued or dropped).", subLabels, nil)
	descDropped   = prometheus.NewDesc("semprop_subscription_dropped_total", "Events a live subscription dropped under its policy.", append(subLabels[:2:2], "policy"), nil)
	descDepth     = prometheus.NewDesc("semprop_subscription_queue_depth", "Events queued for a live subscriber.", subLabels, nil)
	descCapacity  = prometheus.NewDesc("semprop_subscription_queue_capacity", "Queue capacity of a live subscription.", subLabels, nil)

	descStreams      = prometheus.NewDesc("semprop_streams", "Open journal readers: SSE and WebSocket streams, and replays while they run.", nil, nil)
	descStreamEvents = prometheus.NewDesc("semprop_stream_events_total", "Durable events a stream read from the journal (before its selector).", []string{"stream"}, nil)
	descStreamSeq    = prometheus.NewDesc("semprop_stream_seq", "Seq of the last event a stream read (0: none yet).", []string{"stream"}, nil)

	descCons    = prometheus.NewDesc("semprop_consumer_events_total", "Durable consumer deliveries by outcome.", []string{"consumer", "outcome"}, nil)
	descPending = prometheus.NewDesc("semprop_consumer_pending", "Durable consumer deliveries awaiting ack.", []string{"consumer"}, nil)
	descFloor   = prometheus.NewDesc("semprop_consumer_ack_floor", "Durable consumer ack floor (every seq up to it is acked).", []string{"consumer"}, nil)
	descLag     = prometheus.NewDesc("semprop_consumer_lag", "Durable events a consumer has not read yet (matching or not).", []string{"consumer"}, nil)

	descRoutes     = prometheus.NewDesc("semprop_routes", "Routes in the routing table (one per live subscription, plus dynamic routes).", nil, nil)
	descLookups    = prometheus.NewDesc("semprop_route_lookups_total", "Routing lookups of an event type, by whether the cache answered.", []string{"result"}, nil)
	descRouteDeliv = prometheus.NewDesc("semprop_route_deliveries_total", "Routing deliveries by outcome.", []string{"outcome"}, nil)

	managerDescs = metrics.Descs{descPublished, descPublishTime, descLatency, descSubs, descDelivered, descMatched,
		descDropped, descDepth, descCapacity, descStreams, descStreamEvents, descStreamSeq, descCons, descPending,
		descFloor, descLag, descRoutes, descLookups, descRouteDeliv}
)

// Collector returns a Prometheus collector of the manager: events
// published, the publish→durable and delivery latency histograms, live
// subscriptions (by name, or by id when anonymous), open streams (by id),
// durable consumers (by name) and routing. Values are read at scrape
// time. Register it once.
func (m *Manager) Collector() prometheus.Collector { return (*collector)(m) }

type collector Manager

var _ prometheus.Collector = (*collector)(nil)

func (c *collector) Describe(ch chan<- *prometheus.Desc) { managerDescs.Describe(ch) }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m := (*Manager)(c)
	st := m.Stats()
	metrics.Counter(ch, descPublished, st.Published)
	ch <- m.publishTime.Metric(descPublishTime)
	n, sum, buckets := fixedBuckets(st.Latency)
	ch <- prometheus.MustNewConstHistogram(descLatency, n, sum, buckets)

	metrics.Gauge(ch, descSubs, float64(len(st.Subscriptions)))
	for _, s := range st.Subscriptions {
		name, id := s.Name, ""
		if name == "" {
			id = strconv.FormatUint(s.ID, 10)
		}
		metrics.Counter(ch, descDelivered, s.Delivered, name, id)
		metrics.Counter(ch, descMatched, s.Matched, name, id)
		metrics.Counter(ch, descDropped, s.Dropped, name, id, s.Policy.String())
		metrics.Gauge(ch, descDepth, float64(s.Depth), name, id)
		metrics.Gauge(ch, descCapacity, float64(s.Capacity), name, id)
	}

	m.readerMu.Lock()
	metrics.Gauge(ch, descStreams, float64(len(m.readers)))
	for r := range m.readers {
		id := strconv.FormatUint(r.id, 10)
		metrics.Counter(ch, descStreamEvents, r.events.Load(), id)
		metrics.Gauge(ch, descStreamSeq, float64(r.seq.Load()), id)
	}
	m.readerMu.Unlock()

	for _, ci := range st.Consumers {
		metrics.Counter(ch, descCons, ci.Delivered, ci.Name, "delivered")
		metrics.Counter(ch, descCons, ci.Redelivered, ci.Name, "redelivered")
		metrics.Counter(ch, descCons, ci.Acked, ci.Name, "acked")
		metrics.Counter(ch, descCons, ci.DeadLettered, ci.Name, "dead_lettered")
		metrics.Counter(ch, descCons, ci.Gaps, ci.Name, "lost_to_retention")
		metrics.Gauge(ch, descPending, float64(ci.Pending), ci.Name)
		metrics.Gauge(ch, descFloor, float64(ci.AckFloor), ci.Name)
		metrics.Gauge(ch, descLag, float64(ci.Lag), ci.Name)
	}

	r := st.Routing
	metrics.Gauge(ch, descRoutes, float64(r.Routes))
	metrics.Counter(ch, descLookups, r.CacheHits, "cache_hit")
	metrics.Counter(ch, descLookups, r.CacheMisses, "cache_miss")
	metrics.Counter(ch, descRouteDeliv, r.Delivered, "delivered")
	metrics.Counter(ch, descRouteDeliv, r.Failed, "failed")
	metrics.Counter(ch, descRouteDeliv, r.Skipped, "skipped")
	metrics.Counter(ch, descRouteDeliv, r.Failovers, "failover")
	metrics.Counter(ch, descRouteDeliv, r.Undelivered, "undelivered")
}

// fixedBuckets maps a latency snapshot onto the fixed bounds of
// metrics.Histogram (powers of two nanoseconds), so the exported bucket
// set never changes. Each internal bucket lies wholly below some 2^k ns
// (its upper bound is 2^k-1 at most) or above it, so the cumulative counts
// are exact, except that a duration of exactly 2^k ns is counted in the
// next bound.
func fixedBuckets(s HistogramSnapshot) (count uint64, sum float64, buckets map[float64]uint64) {
	buckets = make(map[float64]uint64, metrics.MaxExp-metrics.MinExp+1)
	i := 0
	var cum uint64
	for e := metrics.MinExp; e <= metrics.MaxExp; e++ {
		bound := time.Duration(1) << e
		for ; i < len(s.Buckets) && s.Buckets[i].Le < bound; i++ {
			cum += s.Buckets[i].Count
		}
		buckets[bound.Seconds()] = cum
	}
	for ; i < len(s.Buckets); i++ {
		cum += s.Buckets[i].Count
	}
	return cum, s.Sum.Seconds(), buckets
}
