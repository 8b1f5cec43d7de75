package action

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/semprop/semprop/event"
)

// Publisher publishes an event and returns once it is durable.
// *propagate.Manager implements it.
type Publisher interface {
	Publish(ctx context.Context, ev *event.Event) (uint64, error)
}

// Env is what actions act with: the configuration shared by every call.
// It is not modified once the executor runs.
type Env struct {
	// Roots are the directories file actions may touch; without roots,
	// every file action is refused.
	Roots *Roots
	// Snapshots is the content-addressed store of the snapshot action.
	Snapshots *Store
	// QuarantineDir receives quarantined files; it must be on the same
	// file system as the files (a rename).
	QuarantineDir string
	// Signals enables the signal action.
	Signals bool
	// Guard is the mounts' guard list; without it quarantine-process is
	// refused.
	Guard Guard
	// QuarantineFor is quarantine-process's default duration (default
	// DefaultQuarantineFor).
	QuarantineFor time.Duration
	// Publisher publishes the emit action's events. Set by the executor
	// when nil.
	Publisher Publisher
	// Source is the CloudEvents source of emitted events and webhooks.
	Source string
	// HTTPClient sends webhooks (default: a client without a timeout; each
	// attempt has the action's).
	HTTPClient *http.Client
	// Getenv reads the daemon's environment: exec's env allow-list and
	// webhook secrets (secret_env) (default os.Getenv).
	Getenv func(string) string
	Logger *slog.Logger

	// published reports whether an event ID is in the journal after the
	// executor's cursor (set by the executor).
	published func(event.ID) bool
}

func (e *Env) getenv(k string) string {
	if e.Getenv != nil {
		return e.Getenv(k)
	}
	return os.Getenv(k)
}

func (e *Env) httpClient() *http.Client {
	if e.HTTPClient != nil {
		return e.HTTPClient
	}
	return http.DefaultClient
}
