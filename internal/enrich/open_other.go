//go:build !linux

package enrich

import (
	"os"
	"syscall"
)

// openFile opens p read-only without following a final symbolic link.
func openFile(p string) (*os.File, error) {
	return os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
}
