package output

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/semprop/semprop/event"
)

// kafkaTarget is a kfake cluster and a consumer that collects every record
// of the given topics, by partition, in offset order.
type kafkaTarget struct {
	c      *kfake.Cluster
	refuse atomic.Bool // close connections that carry a produce request
	mu     sync.Mutex
	recs   []*kgo.Record
}

func newKafkaTarget(t testing.TB, topics ...string) *kafkaTarget {
	t.Helper()
	k := &kafkaTarget{}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topics...))
	if err != nil {
		t.Fatal(err)
	}
	k.c = c
	t.Cleanup(c.Close)
	c.ControlKey(kmsg.Produce.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if k.refuse.Load() {
			return nil, errors.New("refused"), true
		}
		return nil, nil, false
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			k.mu.Lock()
			fs.EachRecord(func(r *kgo.Record) { k.recs = append(k.recs, r) })
			k.mu.Unlock()
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait(); cl.Close() })
	return k
}

func (k *kafkaTarget) count() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.recs)
}

func (k *kafkaTarget) records() []*kgo.Record {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]*kgo.Record(nil), k.recs...)
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func (k *kafkaTarget) waitFor(t testing.TB, n int) []*kgo.Record {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for k.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("kafka: %d records, want %d", k.count(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return k.records()
}

func TestKafkaBinaryModeAndTopics(t *testing.T) {
	e := newEnv(t)
	k := newKafkaTarget(t, "fs-events", "other")
	r := start(t, e, Options{Outputs: []Config{{Name: "k", Type: TypeKafka, Kafka: &KafkaConfig{
		Brokers: k.c.ListenAddrs(), Topic: "other", Topics: []KafkaTopic{{Types: "fs.*", Topic: "fs-events"}}}}}})
	evs := e.publish(t, "fs.write", 30, 3)
	e.publish(t, "app.note", 5, 1)
	r.waitSent(t, "k", 35)
	recs := k.waitFor(t, 35)
	byTopic := map[string]int{}
	for _, rec := range recs {
		byTopic[rec.Topic]++
		if rec.Topic != "fs-events" {
			continue
		}
		seq, _ := strconv.Atoi(header(rec, "ce_seq"))
		ev := evs[seq-1]
		if string(rec.Key) != ev.Subject || header(rec, "ce_id") != ev.ID.String() || header(rec, "ce_type") != "fs.write" ||
			header(rec, "ce_specversion") != "1.0" || header(rec, "content-type") != "application/json" || string(rec.Value) != string(ev.Data) {
			t.Errorf("record key %q headers %v value %q: want key %q, ce_* headers and the data", rec.Key, rec.Headers, rec.Value, ev.Subject)
		}
	}
	if byTopic["fs-events"] != 30 || byTopic["other"] != 5 {
		t.Errorf("records by topic %v, want 30 fs-events and 5 other", byTopic)
	}
}

func TestKafkaStructuredMode(t *testing.T) {
	e := newEnv(t)
	k := newKafkaTarget(t, "t")
	r := start(t, e, Options{Outputs: []Config{{Name: "k", Type: TypeKafka, Kafka: &KafkaConfig{
		Brokers: k.c.ListenAddrs(), Topic: "t", Mode: "structured"}}}})
	e.publish(t, "fs.write", 3, 1)
	r.waitSent(t, "k", 3)
	for _, rec := range k.waitFor(t, 3) {
		var ev event.Event
		if err := ev.UnmarshalJSON(rec.Value); err != nil || ev.Type != "fs.write" || header(rec, "content-type") != ctStructured {
			t.Errorf("structured record %q (%v): want a CloudEvent and its content type", rec.Value, err)
		}
	}
}

func TestKafkaRefusedAndForwarderKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns children")
	}
	k := newKafkaTarget(t, "fs")
	n := 6000
	refused := make(chan struct{})
	go func() {
		defer close(refused)
		for k.count() < n/2 {
			time.Sleep(2 * time.Millisecond)
		}
		k.refuse.Store(true)
		time.Sleep(2500 * time.Millisecond)
		k.refuse.Store(false)
	}()
	cursors := killTest(t, Config{Name: "kafka", Type: TypeKafka, BatchSize: 200,
		Retry: RetryConfig{Initial: 10 * time.Millisecond, Max: 200 * time.Millisecond},
		Kafka: &KafkaConfig{Brokers: k.c.ListenAddrs(), Topic: "fs", DeliveryTimeout: time.Second}}, n, 11, k.count)
	<-refused
	var recs []received
	for _, rec := range k.waitFor(t, n) {
		seq, _ := strconv.ParseUint(header(rec, "ce_seq"), 10, 64)
		recs = append(recs, received{Seq: seq, Subject: string(rec.Key)})
	}
	checkDelivery(t, recs, n, cursors, false)
}
