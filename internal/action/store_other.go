//go:build !linux

package action

import "errors"

// Sync makes everything written to the store durable; it needs Linux's
// syncfs(2).
func (s *Store) Sync() error { return errors.New("action: snapshot sync: only supported on linux") }
