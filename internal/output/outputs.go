package output

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/api"
	"github.com/semprop/semprop/internal/filter"
	"github.com/semprop/semprop/internal/metrics"
	"github.com/semprop/semprop/internal/propagate"
)

// Options configure the outputs of a daemon.
type Options struct {
	// Outputs are the configured outputs.
	Outputs []Config
	// Dir holds each output's state in Dir/NAME (the daemon: DATA/outputs).
	Dir string
	// Manager is the event stream's source: outputs read its durable
	// stream with Manager.Reader.
	Manager *propagate.Manager
	// CursorInterval bounds how often a cursor is persisted while events
	// flow (default 1s): after a crash, what was acknowledged since the
	// last save is sent again.
	CursorInterval time.Duration
	Logger         *slog.Logger

	// sinkFor, in tests, builds the sink instead of newSink.
	sinkFor func(Config) (sink, error)
	// onAck, in tests and benchmarks, sees each acknowledged batch.
	onAck func(name string, evs []*event.Event, read int64)
}

// Outputs runs a daemon's outputs. It is safe for concurrent use.
type Outputs struct {
	runners []*runner
	log     *slog.Logger
}

// New validates the configuration, restores each output's cursor (or
// places a new one per its Start) and builds its target's client. Nothing
// is sent before Run.
func New(opts Options) (*Outputs, error) {
	if opts.Manager == nil {
		return nil, errors.New("output: Options.Manager is required")
	}
	if opts.Dir == "" {
		return nil, errors.New("output: Options.Dir is required")
	}
	if err := ValidateAll(opts.Outputs); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.CursorInterval <= 0 {
		opts.CursorInterval = DefaultCursorInterval
	}
	o := &Outputs{log: opts.Logger}
	j := opts.Manager.Journal()
	for _, c := range opts.Outputs {
		c = c.withDefaults()
		log := opts.Logger.With("output", c.Name)
		var (
			s   sink
			err error
		)
		if opts.sinkFor != nil {
			s, err = opts.sinkFor(c)
		} else {
			s, err = newSink(c, log)
		}
		if err != nil {
			o.closeSinks()
			return nil, err
		}
		m, _ := c.matcher()
		r := &runner{
			cfg: c, dir: filepath.Join(opts.Dir, c.Name), sink: s, match: m, log: log, every: opts.CursorInterval,
			open: func(from uint64) (source, error) {
				rd, err := opts.Manager.Reader(from)
				if err != nil {
					return nil, err
				}
				return rd, nil
			},
			head: j.DurableSeq, first: j.FirstSeq,
		}
		if c.Redact != nil {
			r.redact, _ = filter.NewRedactor(*c.Redact)
		}
		if opts.onAck != nil {
			name := c.Name
			r.onAck = func(evs []*event.Event, read int64) { opts.onAck(name, evs, read) }
		}
		r.setState(StateStarting)
		o.runners = append(o.runners, r)
		if err := r.load(); err != nil {
			o.closeSinks()
			return nil, err
		}
	}
	return o, nil
}

func (o *Outputs) closeSinks() {
	for _, r := range o.runners {
		_ = r.sink.Close()
	}
}

func newSink(c Config, log *slog.Logger) (sink, error) {
	var (
		s   sink
		err error
	)
	switch c.Type {
	case TypeKafka:
		s, err = newKafka(c.Kafka, log)
	case TypeNATS:
		s, err = newNATS(c.NATS, c.InFlight*c.BatchSize, c.BatchSize, log)
	case TypeWebhook:
		s, err = newWebhook(c.Webhook)
	case TypeFile:
		s, err = newFile(c.File)
	case TypeSyslog:
		s, err = newSyslog(c.Syslog)
	default:
		err = fmt.Errorf("%w: type %q", ErrConfig, c.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("output %s: %w", c.Name, err)
	}
	return s, nil
}

// Run forwards events through every output until ctx is done, then
// persists the cursors and closes the targets' clients. It returns ctx's
// error, or the first error that stopped an output (the others are
// stopped then too).
func (o *Outputs) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	for _, r := range o.runners {
		wg.Go(func() {
			err := r.run(ctx)
			if err != nil && !errors.Is(err, context.Canceled) {
				o.log.Error("output stopped", "output", r.cfg.Name, "err", err)
				errMu.Lock()
				if first == nil {
					first = err
				}
				errMu.Unlock()
				cancel()
			}
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// Infos returns every output's state and counters, in configuration order.
func (o *Outputs) Infos() []Info {
	out := make([]Info, 0, len(o.runners))
	for _, r := range o.runners {
		out = append(out, r.info())
	}
	return out
}

// Status returns the outputs' section of the daemon's status (a []Info).
func (o *Outputs) Status() any { return o.Infos() }

// Register serves GET /v1/outputs (admin): {"outputs": [Info...]}.
func (o *Outputs) Register(srv *api.Server) {
	srv.HandleAccess("GET /v1/outputs", api.AccessAdmin, http.HandlerFunc(o.serveList))
}

func (o *Outputs) serveList(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(struct {
		Outputs []Info `json:"outputs"`
	}{o.Infos()})
}

var (
	descSent    = prometheus.NewDesc("semprop_output_events_total", "Events an output's target acknowledged.", []string{"output", "type"}, nil)
	descBatches = prometheus.NewDesc("semprop_output_batches_total", "Batches an output's target acknowledged.", []string{"output", "type"}, nil)
	descRetries = prometheus.NewDesc("semprop_output_retries_total", "Failed send attempts of an output (each is retried).", []string{"output", "type"}, nil)
	descDead    = prometheus.NewDesc("semprop_output_dead_lettered_total", "Events an output wrote to its dead letter file.", []string{"output", "type"}, nil)
	descSkipped = prometheus.NewDesc("semprop_output_skipped_total", "Events an output's selector did not match.", []string{"output", "type"}, nil)
	descLag     = prometheus.NewDesc("semprop_output_lag", "Durable events an output is not done with yet (matching or not).", []string{"output", "type"}, nil)
	descUp      = prometheus.NewDesc("semprop_output_healthy", "1 while an output's last send succeeded, 0 while it retries.", []string{"output", "type"}, nil)
	descDelay   = prometheus.NewDesc("semprop_output_delay_seconds", "Time from an event being read from the journal (durable) to its target's acknowledgement.", []string{"output", "type"}, nil)
	outputDescs = metrics.Descs{descSent, descBatches, descRetries, descDead, descSkipped, descLag, descUp, descDelay}
)

// Collector returns the outputs' Prometheus collector; values are read at
// scrape time.
func (o *Outputs) Collector() prometheus.Collector { return (*collector)(o) }

type collector Outputs

var _ prometheus.Collector = (*collector)(nil)

func (c *collector) Describe(ch chan<- *prometheus.Desc) { outputDescs.Describe(ch) }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for _, r := range c.runners {
		info := r.info()
		l := []string{info.Name, info.Type}
		metrics.Counter(ch, descSent, info.Sent, l...)
		metrics.Counter(ch, descBatches, info.Batches, l...)
		metrics.Counter(ch, descRetries, info.Retries, l...)
		metrics.Counter(ch, descDead, info.DeadLettered, l...)
		metrics.Counter(ch, descSkipped, info.Skipped, l...)
		metrics.Gauge(ch, descLag, float64(info.Lag), l...)
		metrics.Gauge(ch, descUp, metrics.Bool(info.State != StateRetrying), l...)
		ch <- r.delay.Metric(descDelay, l...)
	}
}
