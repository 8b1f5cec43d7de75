//go:build !linux

package propagate

// processCPU is not measured outside Linux.
func processCPU() int64 { return 0 }

// threadCPU is not measured outside Linux.
func threadCPU() int64 { return 0 }
