package action

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Sync makes everything written to the store durable (syncfs(2) of its
// file system): the objects of PutUnsynced.
func (s *Store) Sync() error {
	f, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("action: snapshot sync: %w", err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("action: snapshot sync: %w", err)
	}
	return nil
}
