package config

import (
	"fmt"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"
)

// Tree is one captured tree of watch: or mount:. Written as a string (a
// watched directory, or BACKING:MOUNTPOINT for a mount) or as a mapping
// that can also name the tree:
//
//	watch: [/srv/docs, {name: docs, path: /srv/docs}]
//	mount: ["/srv/b:/mnt/b", {name: b, backing: /srv/b, mountpoint: /mnt/b}]
//
// A tree's name (by default the last element of its directory) is how
// instances that capture their own copies of a tree share keys (sync).
type Tree struct {
	Name       string `yaml:"name"`
	Path       string `yaml:"path"`       // watch: the directory; mount: BACKING:MOUNTPOINT
	Backing    string `yaml:"backing"`    // mount only
	Mountpoint string `yaml:"mountpoint"` // mount only
	// Enrich overrides the shared enrich: settings for this tree.
	Enrich *TreeEnrich `yaml:"enrich"`
}

var treeKeys = []string{"name", "path", "backing", "mountpoint", "enrich"}

// TreeEnrich is the enrich: mapping of one tree: an unset key keeps the
// shared setting; ignore patterns are added after the shared ones.
type TreeEnrich struct {
	Content *bool         `yaml:"content"`
	Hash    *string       `yaml:"hash"`
	Counts  *bool         `yaml:"counts"`
	MaxSize Size          `yaml:"max_size"`
	Wait    time.Duration `yaml:"wait"`
	VCS     *string       `yaml:"vcs"`
	Ignore  []string      `yaml:"ignore"`
}

var treeEnrichKeys = []string{"content", "hash", "counts", "max_size", "wait", "vcs", "ignore"}

// UnmarshalYAML reads the mapping, refusing unknown keys.
func (t *TreeEnrich) UnmarshalYAML(n *yaml.Node) error {
	if err := knownKeys(n, treeEnrichKeys, "a tree's enrich"); err != nil {
		return err
	}
	type plain TreeEnrich
	return n.Decode((*plain)(t))
}

// knownKeys fails for a key of the mapping n that is not in keys.
func knownKeys(n *yaml.Node, keys []string, what string) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: %s is a mapping", n.Line, what)
	}
	for i := 0; i < len(n.Content); i += 2 {
		if k := n.Content[i].Value; !slices.Contains(keys, k) {
			return fmt.Errorf("line %d: field %s not found in %s (want %v)", n.Content[i].Line, k, what, keys)
		}
	}
	return nil
}

// UnmarshalYAML reads a tree from a string or a mapping.
func (t *Tree) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*t = Tree{Path: n.Value}
		return nil
	case yaml.MappingNode:
		if err := knownKeys(n, treeKeys, "a tree"); err != nil {
			return err
		}
		type plain Tree
		return n.Decode((*plain)(t))
	}
	return fmt.Errorf("line %d: a tree is a path or a mapping {name, path} / {name, backing, mountpoint}", n.Line)
}

// Trees returns trees given as strings (command-line flags).
func Trees(specs ...string) []Tree {
	ts := make([]Tree, len(specs))
	for i, s := range specs {
		ts[i] = Tree{Path: s}
	}
	return ts
}
