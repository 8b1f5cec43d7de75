package monitor

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// diskUsage is the space and inodes of a file system.
type diskUsage struct {
	FreeBytes, TotalBytes   uint64 // free to unprivileged users
	FreeInodes, TotalInodes uint64
}

func statDisk(dir string) (diskUsage, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return diskUsage{}, fmt.Errorf("statfs: %w", err)
	}
	bs := uint64(st.Bsize)
	return diskUsage{FreeBytes: st.Bavail * bs, TotalBytes: st.Blocks * bs, FreeInodes: st.Ffree, TotalInodes: st.Files}, nil
}
