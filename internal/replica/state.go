package replica

import (
	"cmp"
	"slices"
	"sync"

	"github.com/semprop/semprop/event"
)

// Key names a file across instances: the tree's configured name and the
// path relative to the tree's root ("a/b.txt", slash-separated, no
// leading slash).
type Key struct {
	Tree string `json:"tree"`
	Path string `json:"path"`
}

func (k Key) compare(o Key) int {
	if c := cmp.Compare(k.Tree, o.Tree); c != 0 {
		return c
	}
	return cmp.Compare(k.Path, o.Path)
}

// File is what one instance last saw of a file.
type File struct {
	Size    int64  `json:"size"`
	MTime   int64  `json:"mtime"`          // time of the change, Unix nanoseconds
	Hash    string `json:"hash,omitempty"` // content hash (the event's hash extension), if known
	UID     uint32 `json:"uid"`            // uid of the process that made the change
	Dir     bool   `json:"dir,omitempty"`
	Deleted bool   `json:"deleted,omitempty"`

	// The event that made this version: the instance that saw it, its
	// seq in that instance's journal and its HLC.
	Instance string    `json:"instance"`
	Seq      uint64    `json:"seq"`
	HLC      event.HLC `json:"-"`
}

// sameContent reports whether f and g describe the same content, so that
// concurrent versions of them are no conflict: both deleted, both
// directories, or equal size and a known, equal hash.
func (f *File) sameContent(g *File) bool {
	switch {
	case f.Deleted || g.Deleted:
		return f.Deleted && g.Deleted
	case f.Dir || g.Dir:
		return f.Dir && g.Dir
	}
	return f.Hash != "" && f.Hash == g.Hash && f.Size == g.Size
}

// Version is one value of a key's multi-value register: a File, the dot
// that names the change (Origin, Counter) and the version vector of the
// key's history it has seen (which includes its own dot). A version that
// another's vector covers is superseded; versions whose vectors are
// concurrent are a conflict and are all kept.
type Version struct {
	File
	Origin  string        `json:"origin"`
	Counter uint64        `json:"counter"`
	VV      VersionVector `json:"vv"`
}

// Change is a version of one key: the unit deltas carry.
type Change struct {
	Key Key
	Version
}

// State is the replicated catalog: an observed-remove map from keys to
// multi-value registers ordered by version vectors, and the summary
// vector of every change the state has seen (each change at or below the
// summary is present, superseded, or a collected tombstone).
//
// Merging states (Merge) is commutative, associative and idempotent. A
// State is not safe for concurrent use: Replica guards its own.
type State struct {
	keys    map[Key][]Version
	summary VersionVector
	live    int // keys whose register is not a sole tombstone

	// byOrigin indexes versions by dot so that Delta costs what it
	// returns, not the size of the state. Entries may be stale (their
	// version superseded); Delta skips those and compact drops them.
	byOrigin map[string]*dotLog
	indexed  int // entries in all logs

	// cacheMu guards the sorted key list and the logs' sorting, which
	// readers (holding the owner's read lock) update.
	cacheMu sync.Mutex
	sorted  []Key // nil when keys were added or removed since
}

// dotLog lists the keys that got versions of one origin, by counter.
type dotLog struct {
	refs     []dotRef
	unsorted bool
}

type dotRef struct {
	counter uint64
	key     Key
}

// NewState returns an empty state.
func NewState() *State {
	return &State{keys: make(map[Key][]Version), summary: VersionVector{}, byOrigin: make(map[string]*dotLog)}
}

// index records that k got version (origin, counter).
func (s *State) index(origin string, counter uint64, k Key) {
	l := s.byOrigin[origin]
	if l == nil {
		l = &dotLog{}
		s.byOrigin[origin] = l
	}
	if n := len(l.refs); n > 0 && l.refs[n-1].counter > counter {
		l.unsorted = true
	}
	l.refs = append(l.refs, dotRef{counter, k})
	s.indexed++
	if s.indexed > 2*len(s.keys)+4096 {
		s.compact()
	}
}

// compact rebuilds the dot index from the registers.
func (s *State) compact() {
	s.byOrigin = make(map[string]*dotLog)
	s.indexed = 0
	for k, vs := range s.keys {
		for _, v := range vs {
			l := s.byOrigin[v.Origin]
			if l == nil {
				l = &dotLog{}
				s.byOrigin[v.Origin] = l
			}
			l.refs = append(l.refs, dotRef{v.Counter, k})
			l.unsorted = true
			s.indexed++
		}
	}
}

// each calls fn for every version whose dot since has not seen.
func (s *State) each(since VersionVector, fn func(k Key, v *Version)) {
	for origin, l := range s.byOrigin {
		s.cacheMu.Lock()
		if l.unsorted {
			slices.SortStableFunc(l.refs, func(a, b dotRef) int { return cmp.Compare(a.counter, b.counter) })
			l.unsorted = false
		}
		refs := l.refs
		s.cacheMu.Unlock()
		seen := since[origin]
		i, _ := slices.BinarySearchFunc(refs, seen+1, func(r dotRef, c uint64) int { return cmp.Compare(r.counter, c) })
		for _, ref := range refs[i:] {
			vs := s.keys[ref.key]
			for j := range vs {
				if vs[j].Origin == origin && vs[j].Counter == ref.counter {
					fn(ref.key, &vs[j])
					break
				}
			}
		}
	}
}

// sortedKeys returns the keys in order, cached until a key is added or
// removed.
func (s *State) sortedKeys() []Key {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	if s.sorted == nil {
		s.sorted = make([]Key, 0, len(s.keys))
		for k := range s.keys {
			s.sorted = append(s.sorted, k)
		}
		slices.SortFunc(s.sorted, Key.compare)
	}
	return s.sorted
}

// Summary returns a copy of the state's summary vector.
func (s *State) Summary() VersionVector { return s.summary.Clone() }

// Len is the number of keys, tombstones included.
func (s *State) Len() int { return len(s.keys) }

// Get returns the versions of k (nil if unknown), sorted by origin; the
// slice must not be modified.
func (s *State) Get(k Key) []Version { return s.keys[k] }

// Local records a change that instance id made to k: it supersedes every
// version of k the state holds. The change's counter is n, which must be
// greater than every counter of id the state has seen (the instance uses
// its journal seq). It returns the new version, or false when f changes
// nothing: the sole version (or every one) already has f's content and
// deleted flag, which keeps rescans from making conflicts.
func (s *State) Local(id string, n uint64, k Key, f File) (Version, bool) {
	cur := s.keys[k]
	if len(cur) > 0 && (f.Deleted || f.Hash != "" || f.Dir) {
		same := true
		for i := range cur {
			if !cur[i].sameContent(&f) || cur[i].Size != f.Size {
				same = false
				break
			}
		}
		if same {
			if s.summary[id] < n {
				s.summary[id] = n
			}
			return Version{}, false
		}
	}
	var vv VersionVector
	for i := range cur {
		vv = vv.Merge(cur[i].VV)
	}
	if vv == nil {
		vv = VersionVector{}
	}
	vv[id] = n
	v := Version{File: f, Origin: id, Counter: n, VV: vv}
	s.setLocked(k, []Version{v})
	s.index(id, n, k)
	if s.summary[id] < n {
		s.summary[id] = n
	}
	return v, true
}

// setLocked replaces k's register, keeping the live count.
func (s *State) setLocked(k Key, vs []Version) {
	old, had := s.keys[k]
	if had && !soleTombstone(old) {
		s.live--
	}
	if had != (len(vs) > 0) {
		s.sorted = nil
	}
	if len(vs) == 0 {
		delete(s.keys, k)
		return
	}
	s.keys[k] = vs
	if !soleTombstone(vs) {
		s.live++
	}
}

func soleTombstone(vs []Version) bool { return len(vs) == 1 && vs[0].Deleted }

// Apply merges one version of k into the state and reports whether it
// changed anything. It does not touch the summary: a delta raises it
// only once all of its changes are applied (Merge).
func (s *State) Apply(c Change) bool {
	cur := s.keys[c.Key]
	for i := range cur {
		if cur[i].VV.Covers(c.VV) {
			return false // seen: the same version or one that supersedes it
		}
	}
	next := make([]Version, 0, len(cur)+1)
	for _, w := range cur {
		if !c.VV.Covers(w.VV) {
			next = append(next, w)
		}
	}
	v := c.Version
	v.VV = v.VV.Clone()
	next = append(next, v)
	slices.SortFunc(next, func(a, b Version) int {
		if c := cmp.Compare(a.Origin, b.Origin); c != 0 {
			return c
		}
		return cmp.Compare(a.Counter, b.Counter)
	})
	s.setLocked(c.Key, next)
	s.index(v.Origin, v.Counter, c.Key)
	return true
}

// Delta is a set of changes and the summary of the state they came from.
// Merging a delta that holds every change of its source not covered by
// the receiver's summary makes the receiver's summary cover the source's.
type Delta struct {
	Changes []Change
	Summary VersionVector
}

// Merge joins d into the state: every change, then the summary. It
// returns how many changes were new. d must be complete relative to the
// state (Delta(since) with since covered by this state's summary, or a
// whole state), or the summary would claim changes the state lacks;
// Apply is for parts.
func (s *State) Merge(d Delta) int {
	n := 0
	for _, c := range d.Changes {
		if s.Apply(c) {
			n++
		}
	}
	s.summary = s.summary.Merge(d.Summary)
	return n
}

// Delta returns every version whose change since has not seen, with the
// state's summary: what a peer whose summary is since lacks. A nil since
// gives the whole state. Changes are in key order.
func (s *State) Delta(since VersionVector) Delta {
	d := Delta{Summary: s.summary.Clone()}
	s.each(since, func(k Key, v *Version) { d.Changes = append(d.Changes, Change{Key: k, Version: *v}) })
	sortChanges(d.Changes)
	return d
}

// CountDelta is how many changes Delta(since) would return.
func (s *State) CountDelta(since VersionVector) int {
	n := 0
	s.each(since, func(Key, *Version) { n++ })
	return n
}

func sortChanges(cs []Change) {
	slices.SortFunc(cs, func(a, b Change) int {
		if c := a.Key.compare(b.Key); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Origin, b.Origin); c != 0 {
			return c
		}
		return cmp.Compare(a.Counter, b.Counter)
	})
}

// Range returns the changes of keys after the key after (all keys when
// after is nil), in key order, up to limit keys, and whether keys remain:
// the pages of a full-state transfer.
func (s *State) Range(after *Key, limit int) ([]Change, bool) {
	keys := s.sortedKeys()
	if after != nil {
		i, found := slices.BinarySearchFunc(keys, *after, Key.compare)
		if found {
			i++
		}
		keys = keys[i:]
	}
	more := len(keys) > limit
	if more {
		keys = keys[:limit]
	}
	out := make([]Change, 0, len(keys))
	for _, k := range keys {
		for _, v := range s.keys[k] {
			out = append(out, Change{Key: k, Version: v})
		}
	}
	return out, more
}

// CollectTombstones removes keys whose register is a sole tombstone that
// every peer has acknowledged: each acks vector covers the tombstone's
// change, and this state's summary covers each acks vector (so no peer
// holds a concurrent version this state has not seen). It returns how
// many it removed. With no peers, tombstones are kept: an instance does
// not know who may join.
func (s *State) CollectTombstones(acks []VersionVector) int {
	if len(acks) == 0 {
		return 0
	}
	for _, a := range acks {
		if !s.summary.Covers(a) {
			return 0
		}
	}
	n := 0
	for k, vs := range s.keys {
		if !soleTombstone(vs) {
			continue
		}
		v := vs[0]
		all := true
		for _, a := range acks {
			if !a.Has(v.Origin, v.Counter) {
				all = false
				break
			}
		}
		if all {
			delete(s.keys, k)
			s.sorted = nil
			n++
		}
	}
	return n
}

// Tombstones is the number of keys whose register is a sole tombstone.
func (s *State) Tombstones() int { return len(s.keys) - s.live }

// Conflict reports whether versions are a conflict: more than one, not
// all of the same content.
func Conflict(vs []Version) bool {
	for i := 1; i < len(vs); i++ {
		if !vs[0].sameContent(&vs[i].File) {
			return true
		}
	}
	return false
}

// Clone returns a deep copy of s (versions share their immutable vectors).
func (s *State) Clone() *State {
	c := &State{keys: make(map[Key][]Version, len(s.keys)), summary: s.summary.Clone(), live: s.live}
	for k, vs := range s.keys {
		c.keys[k] = slices.Clone(vs)
	}
	c.compact()
	return c
}

// Equal reports whether s and o hold the same registers (summaries aside).
func (s *State) Equal(o *State) bool {
	if len(s.keys) != len(o.keys) {
		return false
	}
	for k, vs := range s.keys {
		ws, ok := o.keys[k]
		if !ok || len(ws) != len(vs) {
			return false
		}
		for i := range vs {
			if vs[i].Origin != ws[i].Origin || vs[i].Counter != ws[i].Counter || vs[i].File != ws[i].File || vs[i].VV.Compare(ws[i].VV) != Equal {
				return false
			}
		}
	}
	return true
}
