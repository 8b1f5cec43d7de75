package enrich

import (
	"bufio"
	"io"
	"path"
	"path/filepath"
	"strings"
	"sync"
)

// IgnoreFile is the name of the per-directory ignore files.
const IgnoreFile = ".sempropignore"

// maxIgnoreFile bounds what is read of one ignore file.
const maxIgnoreFile = 1 << 20

// ignorer decides whether a path of one tree is ignored: the configured
// patterns (lowest precedence, anchored at the root), then the
// .sempropignore files of the root and of every directory down to the path
// (a deeper file wins). Files are read lazily, on the first path below
// their directory, and cached; forget drops what is cached for a directory
// when its ignore file changes. It is safe for concurrent use.
type ignorer struct {
	backing string // where ignore files are read
	config  *Rules
	noFiles bool
	maxDirs int

	mu sync.Mutex
	// dirs maps a directory (relative, "" the root) to its file's rules;
	// nil when it has none.
	dirs map[string]*Rules
}

func newIgnorer(backing string, patterns []string, noFiles bool, maxDirs int) *ignorer {
	return &ignorer{backing: backing, config: ParseRules(patterns), noFiles: noFiles, maxDirs: maxDirs, dirs: make(map[string]*Rules)}
}

// ignored reports whether rel (relative to the tree root, "" is the root
// itself, never ignored) is excluded.
func (ig *ignorer) ignored(rel string, isDir bool) bool {
	if rel == "" {
		return false
	}
	if ig.noFiles {
		if ig.config.Len() == 0 {
			return false
		}
		return matchLayers(rel, isDir, func(yield func(string, *Rules) bool) { yield("", ig.config) })
	}
	// The directories whose files may apply: "", then each ancestor.
	dirs := make([]string, 1, 8)
	for i := 0; i < len(rel); i++ {
		if rel[i] == '/' {
			dirs = append(dirs, rel[:i])
		}
	}
	files := make([]*Rules, len(dirs))
	some := ig.config.Len() > 0
	for i, d := range dirs {
		files[i] = ig.rulesOf(d)
		some = some || files[i].Len() > 0
	}
	if !some {
		return false
	}
	return matchLayers(rel, isDir, func(yield func(string, *Rules) bool) {
		for i := len(dirs) - 1; i >= 0; i-- {
			if files[i] != nil && !yield(dirs[i], files[i]) {
				return
			}
		}
		yield("", ig.config)
	})
}

// rulesOf returns the rules of dir's ignore file, reading it on first use.
func (ig *ignorer) rulesOf(dir string) *Rules {
	ig.mu.Lock()
	rs, ok := ig.dirs[dir]
	ig.mu.Unlock()
	if ok {
		return rs
	}
	rs = ig.load(dir)
	ig.mu.Lock()
	if len(ig.dirs) >= ig.maxDirs {
		clear(ig.dirs) // bounded: everything is read again lazily
	}
	ig.dirs[dir] = rs
	ig.mu.Unlock()
	return rs
}

func (ig *ignorer) load(dir string) *Rules {
	f, err := openNoATime(filepath.Join(ig.backing, filepath.FromSlash(dir), IgnoreFile))
	if err != nil {
		return nil
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(io.LimitReader(f, maxIgnoreFile))
	sc.Buffer(make([]byte, 0, 4096), maxIgnoreFile)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	rs := ParseRules(lines)
	if rs.Len() == 0 {
		return nil
	}
	return rs
}

// touched notes an event on rel: an ignore file that changed is read
// again; a directory renamed or removed drops everything cached.
func (ig *ignorer) touched(rel string, dirGone bool) {
	if ig.noFiles {
		return
	}
	ig.mu.Lock()
	defer ig.mu.Unlock()
	if dirGone {
		clear(ig.dirs)
		return
	}
	if path.Base(rel) == IgnoreFile {
		d := path.Dir(rel)
		if d == "." {
			d = ""
		}
		delete(ig.dirs, d)
	}
}

// isIgnoreFile reports whether rel names an ignore file.
func isIgnoreFile(rel string) bool {
	return rel == IgnoreFile || strings.HasSuffix(rel, "/"+IgnoreFile)
}
