package action

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/semprop/semprop/internal/bytesize"
)

// Config is the actions: section of the daemon's configuration.
//
//	actions:
//	  roots: []             # directories file actions may touch (default: the watched and mounted trees)
//	  quarantine_dir: ""    # where quarantine moves files (default DATA/quarantine)
//	  signals: false        # enable the signal action
//	  snapshot_retention: 720h  # snapshots older than this are deleted (0: kept forever)
//	  snapshot_max_size: 0      # then the oldest go until the store is at most this big (0: no bound)
//
// The guard that quarantine-process lists processes on has its own
// section (package guard).
type Config struct {
	Roots         []string `yaml:"roots"`
	QuarantineDir string   `yaml:"quarantine_dir"`
	Signals       bool     `yaml:"signals"`
	// SnapshotRetention is how long snapshots (the snapshot action's and
	// the guard's copies before destroy) are kept; 0 keeps them forever.
	SnapshotRetention time.Duration `yaml:"snapshot_retention"`
	// SnapshotMaxSize bounds the bytes of the objects snapshots keep: the
	// oldest snapshots are deleted first; 0 is no bound.
	SnapshotMaxSize bytesize.Size `yaml:"snapshot_max_size"`
}

// Validate checks that the roots and the quarantine directory are
// absolute paths.
func (c Config) Validate() error {
	for _, r := range c.Roots {
		if !filepath.IsAbs(r) {
			return fmt.Errorf("actions.roots: %q: want an absolute path: %w", r, ErrArgs)
		}
	}
	if c.QuarantineDir != "" && !filepath.IsAbs(c.QuarantineDir) {
		return fmt.Errorf("actions.quarantine_dir: %q: want an absolute path: %w", c.QuarantineDir, ErrArgs)
	}
	if c.SnapshotRetention < 0 {
		return fmt.Errorf("actions.snapshot_retention: %v: want a non-negative duration: %w", c.SnapshotRetention, ErrArgs)
	}
	return nil
}
