//go:build !linux

package journal

import (
	"errors"
	"io"
	"os"
)

// datasync flushes f to stable storage (fsync; fdatasync is Linux-only here).
func datasync(f *os.File) error { return f.Sync() }

// lockDir is a no-op outside Linux: the caller must make sure only one
// process opens a journal directory.
func lockDir(dir string) (*os.File, error) { return nil, nil }

// preader reads a file; outside Linux with os.File.ReadAt, which reads
// until b is full or the file ends.
type preader struct{ f *os.File }

func newPreader(f *os.File) (preader, error) { return preader{f}, nil }

// mapRead does nothing outside Linux: reads stay ReadAt.
func (p *preader) mapRead() {}

func (p *preader) mapped() bool { return false }

func (p *preader) close() {}

// readAt reads into b from off: fewer bytes than len(b) is what the file
// holds there, 0 its end.
func (p *preader) readAt(b []byte, off int64) (int, error) {
	n, err := p.f.ReadAt(b, off)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

// mapFile is not used outside Linux: segments are written with WriteAt.
func mapFile(f *os.File, keep, size int64) ([]byte, error) { return nil, errors.ErrUnsupported }

func unmapFile(b []byte) error { return nil }

func prefault(b []byte) error { return errors.ErrUnsupported }
