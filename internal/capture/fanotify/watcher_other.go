//go:build !linux

package fanotify

import "context"

// Watcher is the kernel boundary. It is only available on linux.
type Watcher struct{}

// New returns ErrUnsupported: the kernel boundary needs linux.
func New(opts Options) (*Watcher, error) { return nil, ErrUnsupported }

// Run returns ErrUnsupported.
func (w *Watcher) Run(ctx context.Context) error { return ErrUnsupported }

// Close does nothing.
func (w *Watcher) Close() error { return nil }

// Root returns "".
func (w *Watcher) Root() string { return "" }

// Mode returns "".
func (w *Watcher) Mode() string { return "" }

// Stats returns zero stats.
func (w *Watcher) Stats() Stats { return Stats{} }

// Pause does nothing.
func (w *Watcher) Pause() {}

// Resume does nothing.
func (w *Watcher) Resume() {}
