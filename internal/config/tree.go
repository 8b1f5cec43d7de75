package config

import (
	"fmt"
	"slices"

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
}

var treeKeys = []string{"name", "path", "backing", "mountpoint"}

// UnmarshalYAML reads a tree from a string or a mapping.
func (t *Tree) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*t = Tree{Path: n.Value}
		return nil
	case yaml.MappingNode:
		for i := 0; i < len(n.Content); i += 2 {
			if k := n.Content[i].Value; !slices.Contains(treeKeys, k) {
				return fmt.Errorf("line %d: field %s not found in a tree (want %v)", n.Content[i].Line, k, treeKeys)
			}
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
