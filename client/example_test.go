package client_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"time"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/api"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
)

// server starts an in-process semprop API for the examples; a real program
// talks to `semprop run`.
func server() (url string, stop func()) {
	dir, _ := os.MkdirTemp("", "semprop-example")
	quiet := slog.New(slog.DiscardHandler)
	j, _ := journal.Open(journal.Options{Dir: dir + "/journal", Logger: quiet})
	m, _ := propagate.New(propagate.Options{Journal: j, Dir: dir, Source: "semprop://example", Logger: quiet})
	s := api.New(api.Options{Manager: m, Logger: quiet})
	s.SetReady(true, "")
	hs := httptest.NewServer(s)
	return hs.URL, func() { s.Close(); hs.Close(); m.Close(); j.Close(); os.RemoveAll(dir) }
}

func ExampleClient_Publish() {
	url, stop := server()
	defer stop()
	c := client.New(url, "")
	seq, err := c.Publish(context.Background(), &event.Event{
		Type:    "vector.insert",
		Subject: "/data/notes/a.md",
		Data:    []byte(`{"dims":768}`),
	})
	fmt.Println(seq, err)
	// Output: 1 <nil>
}

func ExampleClient_Stream() {
	url, stop := server()
	defer stop()
	c := client.New(url, "")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, typ := range []string{"doc.created", "vector.insert", "doc.updated"} {
		if _, err := c.Publish(ctx, &event.Event{Type: typ, Subject: "/data/a.md"}); err != nil {
			fmt.Println(err)
		}
	}
	// Follow doc.* events from the beginning; Stream reconnects and
	// resumes by itself, so each event is seen once, in order.
	done := errors.New("done")
	err := c.Stream(ctx, client.Selector{Type: "doc.*"}, 0, func(ev *event.Event) error {
		fmt.Println(ev.Seq, ev.Type, ev.Subject)
		if ev.Type == "doc.updated" {
			return done
		}
		return nil
	})
	fmt.Println(err == done)
	// Output:
	// 1 doc.created /data/a.md
	// 3 doc.updated /data/a.md
	// true
}

func ExampleClient_Consume() {
	url, stop := server()
	defer stop()
	c := client.New(url, "")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.CreateSubscription(ctx, client.Subscription{Name: "indexer", Type: "doc.*", AckWait: "30s"})
	c.PublishBatch(ctx, []*event.Event{{Type: "doc.add", Subject: "1"}, {Type: "doc.add", Subject: "2"}})
	// Each delivery is acknowledged when the callback returns nil.
	n := 0
	c.Consume(ctx, "indexer", func(d client.Delivery) error {
		fmt.Println("indexing", d.Event.Subject, "attempt", d.Attempt)
		if n++; n == 2 {
			cancel()
		}
		return nil
	})
	// Output:
	// indexing 1 attempt 1
	// indexing 2 attempt 1
}
