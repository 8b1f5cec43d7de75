//go:build !linux

package fusefs

// FS is a mounted loopback file system; only available on linux.
type FS struct{}

// Mount returns ErrUnsupported: FUSE mounts need linux.
func Mount(opts Options) (*FS, error) { return nil, ErrUnsupported }

// Unmount does nothing.
func (f *FS) Unmount() error { return nil }

// Wait returns at once.
func (f *FS) Wait() {}

// Passthrough reports false.
func (f *FS) Passthrough() bool { return false }

// Mountpoint returns "".
func (f *FS) Mountpoint() string { return "" }

// Stats returns zero counters.
func (f *FS) Stats() Stats { return Stats{} }

// InvalidateContent does nothing.
func (f *FS) InvalidateContent(rel string) {}

// InvalidateEntry does nothing.
func (f *FS) InvalidateEntry(relDir, name string) {}

// InvalidateDelete does nothing.
func (f *FS) InvalidateDelete(relDir, name string) {}
