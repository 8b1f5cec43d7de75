package action

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/audit"
	"github.com/semprop/semprop/internal/rules"
)

// AttrActionKey is the extension attribute that carries the idempotency
// key on the events the executor and the emit action publish.
const AttrActionKey = "actionkey"

// emit publishes an event whose ID is derived from the idempotency key.
type emit struct {
	c       *Call
	typ     string
	subject string
	data    string
}

func newEmit(c *Call) (Action, error) {
	typ := strings.TrimSpace(c.Args.Str("event_type"))
	if typ == "" || strings.HasPrefix(typ, "semprop.") || strings.ContainsAny(typ, " \t\n") {
		return nil, fmt.Errorf("emit: event_type %q: want a type such as alert.mass-delete (not semprop.*): %w", typ, ErrArgs)
	}
	return &emit{c: c, typ: typ, subject: c.Args.Str("subject"), data: c.Args.Str("data")}, nil
}

// keyID derives an event ID from an idempotency key: the same key, the
// same ID.
func keyID(key string) event.ID {
	sum := sha256.Sum256([]byte(key))
	var id event.ID
	copy(id[:], sum[:16])
	id[0] &= 0x7f // a valid ULID time
	return id
}

func (e *emit) event() *event.Event {
	ev := &event.Event{ID: keyID(e.c.Key), Type: e.typ, Source: e.c.Env.Source, Subject: e.subject}
	if e.c.Match != nil {
		// The match's event time: a wall-clock time ahead of the stream
		// would move the rules' watermark past events not yet journaled.
		ev.Time = e.c.Match.Time
		if e.subject == "" {
			ev.Subject = e.c.Match.Key
		}
	}
	if e.data != "" {
		ev.DataContentType = "application/json"
		if json.Valid([]byte(e.data)) {
			ev.Data = []byte(e.data)
		} else {
			ev.Data, _ = json.Marshal(e.data)
		}
	}
	ev.SetAttr(rules.AttrRule, e.c.Rule) // a rule never matches its own output
	ev.SetAttr(rules.AttrDepth, strconv.Itoa(e.c.Depth))
	ev.SetAttr(AttrActionKey, e.c.Key)
	return ev
}

func (e *emit) Validate(context.Context) ([]audit.Check, json.RawMessage, error) {
	if e.c.Env.Publisher == nil {
		return nil, nil, fmt.Errorf("%w: emit: no publisher", ErrPrecondition)
	}
	return nil, nil, nil
}

func (e *emit) Execute(ctx context.Context, _ json.RawMessage) (json.RawMessage, error) {
	ev := e.event()
	seq, err := e.c.Env.Publisher.Publish(ctx, ev)
	if err != nil {
		return nil, fmt.Errorf("emit: %w", err)
	}
	return json.Marshal(map[string]any{"id": ev.ID.String(), "seq": seq, "type": ev.Type})
}

// Recover: the event is in the journal after the executor's cursor, or
// it was not published.
func (e *emit) Recover(context.Context, json.RawMessage) (json.RawMessage, bool, error) {
	id := keyID(e.c.Key)
	if e.c.Env.published != nil && e.c.Env.published(id) {
		res, _ := json.Marshal(map[string]any{"id": id.String(), "type": e.typ, "recovered": true})
		return res, true, nil
	}
	return nil, false, nil
}

func (e *emit) Rollback(context.Context, json.RawMessage, json.RawMessage) (json.RawMessage, error) {
	return json.RawMessage(`{"undone":false,"why":"a published event cannot be withdrawn"}`), nil
}
