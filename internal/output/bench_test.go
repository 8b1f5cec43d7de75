package output

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/cputime"
)

// benchEvents is the size of the backlog the throughput benchmarks forward.
const benchEvents = 100_000

// preload publishes n fs.write events over 64 files.
func preload(b *testing.B, e *env, n int) {
	b.Helper()
	batch := make([]*event.Event, 0, 1000)
	for i := range n {
		batch = append(batch, &event.Event{Type: "fs.write", Subject: fmt.Sprintf("/srv/data/f%d.md", i%64), Data: []byte(`{"bytes":4096}`)})
		if len(batch) == cap(batch) || i == n-1 {
			if err := e.m.PublishBatch(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

// forward runs a new output over the whole journal until it is done with
// n events, and returns how long that took.
func forward(b *testing.B, e *env, cfg Config, n int) time.Duration {
	b.Helper()
	cfg.Start = "all"
	begin := time.Now()
	r := start(b, e, Options{Outputs: []Config{cfg}})
	for r.o.Infos()[0].Cursor < uint64(n) {
		time.Sleep(time.Millisecond)
	}
	el := time.Since(begin)
	_ = r.stop()
	return el
}

// BenchmarkJetStream forwards a backlog to an embedded JetStream server
// (memory storage: the server's disk is not what is measured) through
// semprop's output, and, as its peer in the same run, publishes the same
// messages (subject, JSON body, Nats-Msg-Id) with a plain nats.go async
// publisher in batches of the same size. Besides events/s, it reports the
// process's CPU time per event of each (the server's share included),
// which a machine busy with other work disturbs less than the wall clock.
// The stream takes fast batches (allow_batched); the output's
// batch_publish is off here: BenchmarkJetStreamFastBatch measures them.
func BenchmarkJetStream(b *testing.B) {
	benchJetStream(b, BatchPublishOff)
}

// BenchmarkJetStreamFastBatch is BenchmarkJetStream with the output in
// fast batches, and a third peer: a plain publisher of one fast batch
// (the same messages, flow acks every 500, at most 8000 unacknowledged).
func BenchmarkJetStreamFastBatch(b *testing.B) {
	benchJetStream(b, BatchPublishAuto)
}

func benchJetStream(b *testing.B, mode string) {
	e := newEnv(b)
	preload(b, e, benchEvents)
	js := newJSServerStorage(b, jetstream.MemoryStorage)
	js.allowBatched(b, 0)
	// The peer's messages, built before the clock starts.
	evs := make([]*event.Event, 0, benchEvents)
	rd, err := e.m.Reader(1)
	if err != nil {
		b.Fatal(err)
	}
	for range benchEvents {
		ev := new(event.Event)
		if err := rd.Next(context.Background(), ev); err != nil {
			b.Fatal(err)
		}
		evs = append(evs, ev)
	}
	rd.Close()
	tmpl, _ := parseSubjectTemplate("semprop.{type}.{path}")
	// A purge keeps the stream's duplicate window: the second publisher
	// of the same messages would have every one found a duplicate and
	// not stored. A new stream starts empty.
	purge := func() { js.recreate(b) }
	var semprop, plain, fast, sempropCPU, plainCPU, fastCPU time.Duration
	runs := 0
	for b.Loop() {
		runs++
		purge()
		cpu := cputime.Now()
		semprop += forward(b, e, Config{Name: fmt.Sprintf("js%d", runs), Type: TypeNATS, BatchSize: 1000,
			NATS: &NATSConfig{URL: js.url(), BatchPublish: mode}}, benchEvents)
		sempropCPU += cputime.Now() - cpu
		if got := js.msgs(); got != benchEvents {
			b.Fatalf("semprop: %d messages stored, want %d", got, benchEvents)
		}
		purge()
		cpu = cputime.Now()
		plain += plainPublish(b, js.url(), evs, tmpl, 1000)
		plainCPU += cputime.Now() - cpu
		if mode == BatchPublishAuto {
			purge()
			cpu = cputime.Now()
			fast += plainFastBatch(b, js.url(), evs, tmpl, 8000)
			fastCPU += cputime.Now() - cpu
			if got := js.msgs(); got != benchEvents {
				b.Fatalf("plain fast batch: %d messages stored, want %d", got, benchEvents)
			}
		}
	}
	n := float64(runs * benchEvents)
	b.ReportMetric(n/semprop.Seconds(), "semprop-events/s")
	b.ReportMetric(n/plain.Seconds(), "natsgo-events/s")
	b.ReportMetric(plain.Seconds()/semprop.Seconds(), "ratio")
	b.ReportMetric(float64(sempropCPU.Nanoseconds())/n, "semprop-cpu-ns/event")
	b.ReportMetric(float64(plainCPU.Nanoseconds())/n, "natsgo-cpu-ns/event")
	if mode == BatchPublishAuto {
		b.ReportMetric(n/fast.Seconds(), "fastbatch-events/s")
		b.ReportMetric(fast.Seconds()/semprop.Seconds(), "fastbatch-ratio")
		b.ReportMetric(float64(fastCPU.Nanoseconds())/n, "fastbatch-cpu-ns/event")
	}
}

// plainFastBatch publishes evs as one JetStream fast batch, as a program
// without semprop would: flow acks every 500 messages, at most window
// messages unacknowledged, an end-of-batch commit and its publish ack.
func plainFastBatch(b *testing.B, url string, evs []*event.Event, tmpl subjectTemplate, window int) time.Duration {
	b.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	prefix := nc.NewInbox() + ".b1.500.fail."
	acks := make(chan fastAnswer, 1024)
	sub, err := nc.Subscribe(prefix+">", func(m *nats.Msg) {
		var a fastAnswer
		if err := json.Unmarshal(m.Data, &a); err == nil {
			acks <- a
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()
	begin := time.Now()
	acked := uint64(0)
	take := func(a fastAnswer) {
		switch {
		case a.Error != nil:
			b.Fatalf("fast batch: %+v", a.Error)
		case a.Type == "ack":
			acked = max(acked, a.Seq)
		case a.Type == "" && a.Batch != "":
			acked = max(acked, a.Count)
		}
	}
	for i, ev := range evs {
		seq := uint64(i + 1)
		for seq > acked+uint64(window) {
			take(<-acks)
		}
		op := "1"
		if seq == 1 {
			op = "0"
		}
		msg := nats.NewMsg(tmpl.expand(ev))
		msg.Reply = prefix + strconv.FormatUint(seq, 10) + "." + op + ".$FI"
		msg.Header.Set(jetstream.MsgIDHeader, ev.ID.String())
		msg.Header.Set("Content-Type", ctStructured)
		msg.Data = ev.AppendJSON(make([]byte, 0, 256))
		if err := nc.PublishMsg(msg); err != nil {
			b.Fatal(err)
		}
	}
	eob := &nats.Msg{Subject: tmpl.expand(evs[0]), Reply: prefix + strconv.Itoa(len(evs)+1) + ".3.$FI"}
	if err := nc.PublishMsg(eob); err != nil {
		b.Fatal(err)
	}
	for acked < uint64(len(evs)) {
		select {
		case a := <-acks:
			take(a)
		case <-time.After(10 * time.Second):
			b.Fatalf("fast batch: %d of %d acknowledged", acked, len(evs))
		}
	}
	return time.Since(begin)
}

// BenchmarkJetStreamInFlight forwards the backlog of BenchmarkJetStream
// with in_flight from 1 (stop-and-wait) to 16 batches of 1000.
func BenchmarkJetStreamInFlight(b *testing.B) {
	e := newEnv(b)
	preload(b, e, benchEvents)
	js := newJSServerStorage(b, jetstream.MemoryStorage)
	runs := 0
	for _, w := range []int{1, 2, 4, 8, 16} {
		b.Run(fmt.Sprintf("in_flight=%d", w), func(b *testing.B) {
			var el, cpu time.Duration
			n := 0
			for b.Loop() {
				runs++
				js.recreate(b)
				c0 := cputime.Now()
				el += forward(b, e, Config{Name: fmt.Sprintf("js%d", runs), Type: TypeNATS, BatchSize: 1000, InFlight: w,
					NATS: &NATSConfig{URL: js.url()}}, benchEvents)
				cpu += cputime.Now() - c0
				n += benchEvents
			}
			b.ReportMetric(float64(n)/el.Seconds(), "events/s")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/event")
		})
	}
}

// plainPublish publishes evs with nats.go's JetStream async API, waiting
// for each batch's acks, as a program without semprop would.
func plainPublish(b *testing.B, url string, evs []*event.Event, tmpl subjectTemplate, batch int) time.Duration {
	b.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1<<16))
	if err != nil {
		b.Fatal(err)
	}
	begin := time.Now()
	futures := make([]jetstream.PubAckFuture, 0, batch)
	for i := 0; i < len(evs); i += batch {
		futures = futures[:0]
		for _, ev := range evs[i:min(i+batch, len(evs))] {
			msg := nats.NewMsg(tmpl.expand(ev))
			msg.Header.Set(jetstream.MsgIDHeader, ev.ID.String())
			msg.Header.Set("Content-Type", ctStructured)
			msg.Data = ev.AppendJSON(make([]byte, 0, 256))
			f, err := js.PublishMsgAsync(msg)
			if err != nil {
				b.Fatal(err)
			}
			futures = append(futures, f)
		}
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				b.Fatal(err)
			}
		}
	}
	return time.Since(begin)
}

// BenchmarkKafka forwards a backlog to kfake (events/s), then measures the
// delay of a live stream at a steady rate: from the event being read from
// the journal right after it became durable (read) and from the publish
// call (publish) to the target's produce ack.
func BenchmarkKafka(b *testing.B) {
	e := newEnv(b)
	preload(b, e, benchEvents)
	k := newKafkaTarget(b, "fs")
	var el, cpu time.Duration
	runs := 0
	for b.Loop() {
		runs++
		c0 := cputime.Now()
		el += forward(b, e, Config{Name: fmt.Sprintf("k%d", runs), Type: TypeKafka, BatchSize: 1000,
			Kafka: &KafkaConfig{Brokers: k.c.ListenAddrs(), Topic: "fs"}}, benchEvents)
		cpu += cputime.Now() - c0
	}
	b.ReportMetric(float64(runs*benchEvents)/el.Seconds(), "events/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(runs*benchEvents), "cpu-ns/event")

	// The delay of a live stream: 20k events/s in batches of 100 for 2s.
	e2 := newEnv(b)
	var (
		mu        sync.Mutex
		started   []time.Time // by publish batch
		fromRead  []time.Duration
		fromStart []time.Duration
	)
	onAck := func(_ string, evs []*event.Event, read int64) {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		for _, ev := range evs {
			fromRead = append(fromRead, now.Sub(time.Unix(0, read)))
			if i := int(ev.Seq-1) / 100; i < len(started) {
				fromStart = append(fromStart, now.Sub(started[i]))
			}
		}
	}
	r := start(b, e2, Options{Outputs: []Config{{Name: "live", Type: TypeKafka, Kafka: &KafkaConfig{Brokers: k.c.ListenAddrs(), Topic: "fs"}}},
		onAck: onAck, Dir: filepath.Join(e2.dir, "outputs")})
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for i := range 400 {
		<-tick.C
		batch := make([]*event.Event, 100)
		for j := range batch {
			batch[j] = &event.Event{Type: "fs.write", Subject: fmt.Sprintf("/srv/live/f%d.md", j%16)}
		}
		mu.Lock()
		started = append(started, time.Now())
		mu.Unlock()
		if err := e2.m.PublishBatch(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
		_ = i
	}
	r.waitSent(b, "live", 40000)
	mu.Lock()
	defer mu.Unlock()
	q := func(ds []time.Duration, p float64) float64 {
		s := slices.Clone(ds)
		slices.Sort(s)
		return float64(s[int(p*float64(len(s)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(q(fromRead, 0.5), "read-ack-p50-ms")
	b.ReportMetric(q(fromRead, 0.99), "read-ack-p99-ms")
	b.ReportMetric(q(fromStart, 0.5), "publish-ack-p50-ms")
	b.ReportMetric(q(fromStart, 0.99), "publish-ack-p99-ms")
}
