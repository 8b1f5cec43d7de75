package enrich

import (
	"errors"
	"fmt"
	"time"
)

// ErrTree reports an invalid per-tree override.
var ErrTree = errors.New("enrich: invalid tree settings")

// TreeOptions override, for one tree, the enrichment settings that every
// tree otherwise shares: the YAML mapping `enrich:` of a watch: or mount:
// entry. A nil field keeps the shared value; Ignore patterns are added
// after the shared ones (so they win over them, and .sempropignore files
// still win over both). The zero value changes nothing.
//
//	watch:
//	  - path: /srv/docs
//	    enrich: {hash: sha256, counts: true}
//	  - path: /srv/build
//	    enrich: {content: false, vcs: drop, ignore: ["*.o"]}
type TreeOptions struct {
	// Content switches content facts on or off for the tree.
	Content *bool `yaml:"content,omitempty" json:"content,omitempty"`
	// Hash is "xxh3" or "sha256".
	Hash *string `yaml:"hash,omitempty" json:"hash,omitempty"`
	// Counts adds line and word counts to text files.
	Counts *bool `yaml:"counts,omitempty" json:"counts,omitempty"`
	// MaxSize: larger files are not read (bytes; 0 keeps the shared value).
	MaxSize int64 `yaml:"max_size,omitempty" json:"max_size,omitempty"`
	// Wait is how long a batch of the tree waits for its facts (0 keeps
	// the shared value).
	Wait time.Duration `yaml:"wait,omitempty" json:"wait,omitempty"`
	// VCS is "pass", "summarise" or "drop".
	VCS *string `yaml:"vcs,omitempty" json:"vcs,omitempty"`
	// Ignore are gitignore patterns anchored at the tree's root, added
	// after the shared ones.
	Ignore []string `yaml:"ignore,omitempty" json:"ignore,omitempty"`
}

// Validate reports the first invalid field, naming it as YAML does.
func (t TreeOptions) Validate() error {
	if t.Hash != nil && *t.Hash != HashXXH3 && *t.Hash != HashSHA256 {
		return fmt.Errorf("%w: hash %q: want xxh3 or sha256", ErrTree, *t.Hash)
	}
	if t.VCS != nil {
		switch VCSMode(*t.VCS) {
		case VCSPass, VCSSummarise, VCSDrop:
		default:
			return fmt.Errorf("%w: vcs %q: want pass, summarise or drop", ErrTree, *t.VCS)
		}
	}
	if t.MaxSize < 0 {
		return fmt.Errorf("%w: max_size %d: want a positive size", ErrTree, t.MaxSize)
	}
	if t.Wait < 0 {
		return fmt.Errorf("%w: wait %v: want a positive duration", ErrTree, t.Wait)
	}
	for _, p := range t.Ignore {
		if len(p) > 4096 {
			return fmt.Errorf("%w: ignore: %w", ErrTree, ErrPatterns)
		}
	}
	return nil
}

// WithTree returns o with t's overrides applied (o is not modified). It
// fails when t is invalid.
func (o Options) WithTree(t TreeOptions) (Options, error) {
	if err := t.Validate(); err != nil {
		return o, err
	}
	if t.Content != nil {
		o.NoContent = !*t.Content
	}
	if t.Hash != nil {
		o.Hash = *t.Hash
	}
	if t.Counts != nil {
		o.Counts = *t.Counts
	}
	if t.MaxSize > 0 {
		o.MaxSize = t.MaxSize
	}
	if t.Wait > 0 {
		o.Wait = t.Wait
	}
	if t.VCS != nil {
		o.VCS = VCSMode(*t.VCS)
	}
	if len(t.Ignore) > 0 {
		o.Ignore = append(append([]string(nil), o.Ignore...), t.Ignore...)
	}
	return o, nil
}
