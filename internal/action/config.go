package action

import (
	"fmt"
	"path/filepath"
)

// Config is the actions: section of the daemon's configuration.
//
//	actions:
//	  roots: []             # directories file actions may touch (default: the watched and mounted trees)
//	  quarantine_dir: ""    # where quarantine moves files (default DATA/quarantine)
//	  signals: false        # enable the signal action
//
// The guard that quarantine-process lists processes on has its own
// section (package guard).
type Config struct {
	Roots         []string `yaml:"roots"`
	QuarantineDir string   `yaml:"quarantine_dir"`
	Signals       bool     `yaml:"signals"`
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
	return nil
}
