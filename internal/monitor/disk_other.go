//go:build !linux

package monitor

import "errors"

type diskUsage struct {
	FreeBytes, TotalBytes   uint64
	FreeInodes, TotalInodes uint64
}

func statDisk(string) (diskUsage, error) {
	return diskUsage{}, errors.New("statfs: disk checks are implemented on Linux only")
}
