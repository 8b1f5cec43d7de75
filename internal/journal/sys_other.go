//go:build !linux

package journal

import "os"

// datasync flushes f to stable storage (fsync; fdatasync is Linux-only here).
func datasync(f *os.File) error { return f.Sync() }

// lockDir is a no-op outside Linux: the caller must make sure only one
// process opens a journal directory.
func lockDir(dir string) (*os.File, error) { return nil, nil }
