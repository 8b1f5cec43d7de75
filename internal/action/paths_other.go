//go:build !linux

package action

import (
	"errors"
	"os"
)

// Roots are the directories actions may touch (Linux only).
type Roots struct{}

var errNotLinux = errors.New("action: file actions need Linux (openat2)")

// NewRoots fails: file actions need openat2.
func NewRoots(dirs ...string) (*Roots, error) { return nil, errNotLinux }

// Dirs returns nil.
func (r *Roots) Dirs() []string { return nil }

// Open fails.
func (r *Roots) Open(path string, flags int, mode uint32) (*os.File, error) { return nil, errNotLinux }

// OpenParent fails.
func (r *Roots) OpenParent(path string) (*os.File, string, error) { return nil, "", errNotLinux }
