package fusefs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/capture"
)

// node is a loopback node whose mutating operations report ops. Reads,
// lookups and directory listing are the library's.
type node struct {
	fs.LoopbackNode
	fsys *FS
	ino  uint64 // inode number on the backing file system

	mu       sync.Mutex // guards reported and claims
	reported dataSig    // the file's state when its last data change was reported
	claims   int        // data changes made through the mount and not yet reported (claim)

	dir atomic.Pointer[dirPath] // a directory's path, cached (FS.relPath)
}

// dirPath is a directory's path relative to the root, as of tree
// generation gen.
type dirPath struct {
	rel string
	gen uint64
}

var (
	_ fs.InodeEmbedder      = (*node)(nil)
	_ fs.NodeCreater        = (*node)(nil)
	_ fs.NodeOpener         = (*node)(nil)
	_ fs.NodeMknoder        = (*node)(nil)
	_ fs.NodeMkdirer        = (*node)(nil)
	_ fs.NodeRmdirer        = (*node)(nil)
	_ fs.NodeUnlinker       = (*node)(nil)
	_ fs.NodeRenamer        = (*node)(nil)
	_ fs.NodeLinker         = (*node)(nil)
	_ fs.NodeSymlinker      = (*node)(nil)
	_ fs.NodeSetattrer      = (*node)(nil)
	_ fs.NodeSetxattrer     = (*node)(nil)
	_ fs.NodeRemovexattrer  = (*node)(nil)
	_ fs.NodeCopyFileRanger = (*node)(nil)
)

// newNode is the LoopbackRoot.NewNode hook.
func (f *FS) newNode(root *fs.LoopbackRoot, _ *fs.Inode, _ string, st *syscall.Stat_t) fs.InodeEmbedder {
	return &node{LoopbackNode: fs.LoopbackNode{RootData: root}, fsys: f, ino: st.Ino}
}

// dataSig identifies a version of a file's data cheaply: size and mtime.
// Not ctime: a chmod, rename or unlink between close and release changes
// it and would be taken for a data change.
type dataSig struct {
	size  int64
	mtime int64 // ns
}

func sigOfStat(st *syscall.Stat_t) dataSig {
	return dataSig{size: st.Size, mtime: st.Mtim.Nano()}
}

func sigOfAttr(a *fuse.Attr) dataSig {
	return dataSig{
		size:  int64(a.Size),
		mtime: int64(a.Mtime)*1e9 + int64(a.Mtimensec),
	}
}

func (n *node) setReported(s dataSig) {
	n.mu.Lock()
	n.reported = s
	n.mu.Unlock()
}

func (n *node) alreadyReported(s dataSig) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.reported == s
}

// claim notes a data change to the file made through the mount, before it
// reaches the backing file; whoever made it reports it (a handle when it
// is next flushed or released, Setattr at once) and then drops the claim.
// Meanwhile a handle that finds the file changed without having seen a
// change itself (passthrough: handle.report) leaves the change to them: a
// release arrives after close(2) has returned, while the caller may be
// changing the file through another descriptor.
func (n *node) claim() {
	n.mu.Lock()
	n.claims++
	n.mu.Unlock()
}

func (n *node) unclaim() {
	n.mu.Lock()
	n.claims--
	n.mu.Unlock()
}

// othersChanging reports whether claims other than the asker's own (0 or
// 1) are held.
func (n *node) othersChanging(own int) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.claims > own
}

// truncClaim claims the node of in for an open that truncates it, and
// returns what hands the claim to the handle made for that open (or drops
// it when there is none).
func truncClaim(in *fs.Inode) func(fs.FileHandle) {
	cn, _ := in.Operations().(*node)
	if cn == nil {
		return func(fs.FileHandle) {}
	}
	cn.claim()
	return func(fh fs.FileHandle) {
		if h, ok := fh.(*handle); ok && h.node == cn {
			h.mu.Lock()
			h.claimed = true // a new handle: it held none
			h.mu.Unlock()
			return
		}
		cn.unclaim()
	}
}

// relPath returns the path of in relative to the backing root, and false if
// in is no longer linked to the root (deleted). Directories' paths are
// cached, good until a rename or rmdir through the mount (FS.treeGen): a
// file's path is then its name under its parent's cached path, one lock
// instead of one per ancestor, and no slice to build.
func (f *FS) relPath(in *fs.Inode) (string, bool) {
	if in.IsRoot() {
		return "", true
	}
	n, ok := in.Operations().(*node)
	if !ok {
		return walkPath(in)
	}
	gen := f.treeGen.Load() // before the walk: see treeHook
	isDir := n.isDir()
	if isDir {
		if c := n.dir.Load(); c != nil && c.gen == gen {
			return c.rel, true
		}
	}
	name, parent := in.Parent()
	if parent == nil {
		return "", false
	}
	dir, ok := f.relPath(parent)
	if !ok {
		return "", false
	}
	rel := joinRel(dir, name)
	if isDir {
		n.dir.Store(&dirPath{rel: rel, gen: gen})
	}
	return rel, true
}

// walkPath is relPath without the cache.
func walkPath(in *fs.Inode) (string, bool) {
	var segs []string
	p := in
	for !p.IsRoot() {
		name, parent := p.Parent()
		if parent == nil {
			return "", false
		}
		segs = append(segs, name)
		p = parent
	}
	if len(segs) == 0 {
		return "", true
	}
	if len(segs) == 1 {
		return segs[0], true
	}
	for i, j := 0, len(segs)-1; i < j; i, j = i+1, j-1 {
		segs[i], segs[j] = segs[j], segs[i]
	}
	return strings.Join(segs, "/"), true
}

func joinRel(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func (n *node) rel() string {
	r, _ := n.fsys.relPath(n.EmbeddedInode())
	return r
}

func (n *node) isDir() bool {
	return n.EmbeddedInode().StableAttr().Mode&syscall.S_IFMT == syscall.S_IFDIR
}

// child describes name in n before an operation: from the kernel-known
// inode tree, or else from the backing file system.
func (n *node) child(rel, name string) (ino uint64, isDir, ok bool) {
	if ch := n.GetChild(name); ch != nil {
		if cn, ok := ch.Operations().(*node); ok {
			return cn.ino, cn.isDir(), true
		}
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(n.RootData.Path, rel, name), &st); err != nil {
		return 0, false, false
	}
	return st.Ino, st.Mode&syscall.S_IFMT == syscall.S_IFDIR, true
}

// dirRel returns the path of directory n for an operation that makes a
// name in it, relative to the root; ENOENT if n was removed meanwhile.
// An operation asks once and passes it on.
func (n *node) dirRel() (string, syscall.Errno) {
	rel, ok := n.fsys.relPath(n.EmbeddedInode())
	if !ok {
		return "", syscall.ENOENT
	}
	return rel, 0
}

// emitNew reports a new name in n (whose path is rel) from the attributes
// the loopback filled in.
func (n *node) emitNew(ctx context.Context, k capture.Kind, rel, name string, a *fuse.Attr, target string) {
	op := n.fsys.newOp(ctx, k)
	op.Path = n.fsys.mountPath(joinRel(rel, name))
	op.Target = target
	op.IsDir = k == capture.KindMkdir
	op.Inode, op.Mode = a.Ino, a.Mode
	op.Known |= event.HasInode | event.HasMode
	if k == capture.KindCreate {
		op.Size = int64(a.Size)
		op.Known |= event.HasSize
	}
	n.fsys.emit(op)
}

// Create creates and opens a file. O_EXCL is added so a name that already
// exists on the backing tree (the kernel's view was stale) is opened, not
// reported as created.
func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if n.fsys.refuse(ctx, "create") {
		return nil, nil, 0, errRefused
	}
	rel, errno := n.dirRel()
	if errno != 0 {
		return nil, nil, 0, errno
	}
	ch, fh, a, errno := n.createFile(ctx, rel, name, flags|syscall.O_EXCL, mode, out)
	if errno == syscall.EEXIST && flags&syscall.O_EXCL == 0 {
		return n.openExisting(ctx, rel, name, flags, out)
	}
	if errno != 0 {
		return ch, fh, 0, errno
	}
	n.emitNew(ctx, capture.KindCreate, rel, name, &out.Attr, "")
	h := n.fsys.wrapAt(ctx, ch, joinRel(rel, name), fh, flags&^syscall.O_TRUNC, sigOfAttr(&out.Attr))
	if hh, ok := h.(*handle); ok {
		hh.anchor = a
	}
	return ch, h, 0, 0
}

// openExisting serves a CREATE for a name that exists on the backing tree.
func (n *node) openExisting(ctx context.Context, rel, name string, flags uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	ch, errno := n.LoopbackNode.Lookup(ctx, name, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	before := sigOfAttr(&out.Attr) // an O_TRUNC below shows as a change at flush
	hand := func(fs.FileHandle) {}
	if flags&syscall.O_TRUNC != 0 {
		n.fsys.preserve(joinRel(rel, name), "open", 0)
		hand = truncClaim(ch)
	}
	fl := int(flags) &^ (syscall.O_CREAT | syscall.O_EXCL | syscall.O_APPEND)
	file, err := os.OpenFile(n.backingPath(rel, name), fl|syscall.O_NOFOLLOW, 0)
	if err != nil {
		hand(nil)
		return nil, nil, 0, fs.ToErrno(err)
	}
	h := n.fsys.wrapAt(ctx, ch, joinRel(rel, name), fs.NewLoopbackFileFromOS(file), flags, before)
	hand(h)
	return ch, h, 0, 0
}

// Open opens a file; handles opened for writing (or truncating: the mount
// negotiates atomic O_TRUNC, so the truncation arrives here and not as a
// SETATTR without a handle) are tracked.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		if n.fsys.refuse(ctx, "open") {
			return nil, 0, errRefused
		}
		if flags&syscall.O_TRUNC != 0 {
			n.fsys.preserve(n.rel(), "open", 0)
		}
	}
	hand := func(fs.FileHandle) {}
	if flags&syscall.O_TRUNC != 0 {
		hand = truncClaim(n.EmbeddedInode())
	}
	fh, fflags, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		hand(nil)
		return fh, fflags, errno
	}
	if flags&syscall.O_ACCMODE == syscall.O_RDONLY && flags&syscall.O_TRUNC == 0 {
		if lf, ok := fh.(*fs.LoopbackFile); ok && n.fsys.ptAsked && !n.fsys.passthrough.Load() {
			// The capability was negotiated but passthrough is off (the
			// probe failed): a backing file registered for a reader would
			// be shared by later writers of the inode, hiding their writes.
			return noPassthrough{lf}, fflags, 0
		}
		return fh, fflags, 0
	}
	h := n.fsys.wrap(ctx, n.EmbeddedInode(), fh, flags, dataSig{size: -1})
	hand(h)
	return h, fflags, 0
}

// Mknod creates a device, fifo or socket: KindCreate.
func (n *node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if n.fsys.refuse(ctx, "mknod") {
		return nil, errRefused
	}
	rel, errno := n.dirRel()
	if errno != 0 {
		return nil, errno
	}
	ch, errno := n.mknod(ctx, rel, name, mode, rdev, out)
	if errno == 0 {
		n.emitNew(ctx, capture.KindCreate, rel, name, &out.Attr, "")
	}
	return ch, errno
}

// Mkdir creates a directory: KindMkdir.
func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if n.fsys.refuse(ctx, "mkdir") {
		return nil, errRefused
	}
	rel, errno := n.dirRel()
	if errno != 0 {
		return nil, errno
	}
	ch, errno := n.mkdir(ctx, rel, name, mode, out)
	if errno == 0 {
		n.emitNew(ctx, capture.KindMkdir, rel, name, &out.Attr, "")
	}
	return ch, errno
}

// Symlink creates a symbolic link: KindSymlink with Target.
func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if n.fsys.refuse(ctx, "symlink") {
		return nil, errRefused
	}
	rel, errno := n.dirRel()
	if errno != 0 {
		return nil, errno
	}
	ch, errno := n.symlink(ctx, rel, target, name, out)
	if errno == 0 {
		n.emitNew(ctx, capture.KindSymlink, rel, name, &out.Attr, target)
	}
	return ch, errno
}

// Link makes a hard link: KindLink, OldPath = the existing name.
func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if n.fsys.refuse(ctx, "link") {
		return nil, errRefused
	}
	old, _ := n.fsys.relPath(target.EmbeddedInode())
	ch, errno := n.LoopbackNode.Link(ctx, target, name, out)
	if errno == 0 {
		op := n.fsys.newOp(ctx, capture.KindLink)
		op.Path = n.fsys.mountPath(joinRel(n.rel(), name))
		op.OldPath = n.fsys.mountPath(old)
		op.Inode, op.Mode = out.Attr.Ino, out.Attr.Mode
		op.Known |= event.HasInode | event.HasMode
		n.fsys.emit(op)
	}
	return ch, errno
}

// Unlink removes a name: KindDelete.
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	if n.fsys.refuse(ctx, "unlink") {
		return errRefused
	}
	if n.fsys.guard != nil && n.fsys.guard.Preserving() {
		if rel, ok := n.fsys.relPath(n.EmbeddedInode()); ok {
			n.fsys.preserve(joinRel(rel, name), "unlink", -1)
		}
	}
	return n.remove(ctx, name, capture.KindDelete, n.LoopbackNode.Unlink)
}

// Rmdir removes a directory: KindRmdir.
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	if n.fsys.refuse(ctx, "rmdir") {
		return errRefused
	}
	return n.remove(ctx, name, capture.KindRmdir, n.LoopbackNode.Rmdir)
}

func (n *node) remove(ctx context.Context, name string, k capture.Kind, do func(context.Context, string) syscall.Errno) syscall.Errno {
	rel := n.rel()
	ino, _, known := n.child(rel, name)
	if errno := do(ctx, name); errno != 0 {
		return errno
	}
	op := n.fsys.newOp(ctx, k)
	op.Path = n.fsys.mountPath(joinRel(rel, name))
	op.IsDir = k == capture.KindRmdir
	if known {
		op.Inode = ino
		op.Known |= event.HasInode
	}
	n.fsys.emit(op)
	return 0
}

// Rename renames: KindRename (OldPath → Path). RENAME_EXCHANGE swaps two
// names and is reported as two renames.
func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if n.fsys.refuse(ctx, "rename") {
		return errRefused
	}
	rel := n.rel()
	newRel, _ := n.fsys.relPath(newParent.EmbeddedInode())
	if flags&(fs.RENAME_EXCHANGE|unix.RENAME_NOREPLACE) == 0 {
		n.fsys.preserve(joinRel(newRel, newName), "rename", -1) // the name replaced, if any
	}
	ino, isDir, known := n.child(rel, name)
	var ino2 uint64
	var isDir2, known2 bool
	exchange := flags&fs.RENAME_EXCHANGE != 0
	if exchange {
		if np, ok := newParent.(*node); ok {
			ino2, isDir2, known2 = np.child(newRel, newName)
		}
	}
	if errno := n.LoopbackNode.Rename(ctx, name, newParent, newName, flags); errno != 0 {
		return errno
	}
	from, to := n.fsys.mountPath(joinRel(rel, name)), n.fsys.mountPath(joinRel(newRel, newName))
	n.emitRename(ctx, from, to, ino, isDir, known)
	if exchange {
		n.emitRename(ctx, to, from, ino2, isDir2, known2)
	}
	return 0
}

func (n *node) emitRename(ctx context.Context, from, to string, ino uint64, isDir, known bool) {
	op := n.fsys.newOp(ctx, capture.KindRename)
	op.OldPath, op.Path, op.IsDir = from, to, isDir
	if known {
		op.Inode = ino
		op.Known |= event.HasInode
	}
	n.fsys.emit(op)
}

// Setattr changes attributes. A size change is a data change (KindWrite);
// through an open handle it is folded into that handle's KindWrite. Mode,
// owner or times alone are KindAttrib.
func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if n.fsys.refuse(ctx, "setattr") {
		return errRefused
	}
	if size, ok := in.GetSize(); ok {
		n.fsys.preserve(n.rel(), "setattr", int64(size))
		if h, ok := f.(*handle); ok {
			h.beginChange() // reported when the handle is closed
		} else {
			n.claim() // reported below
			defer n.unclaim()
		}
	}
	if errno := n.LoopbackNode.Setattr(ctx, f, in, out); errno != 0 {
		return errno
	}
	_, sizeSet := in.GetSize()
	_, modeSet := in.GetMode()
	_, uidSet := in.GetUID()
	_, gidSet := in.GetGID()
	_, mSet := in.GetMTime()
	_, aSet := in.GetATime()
	timesSet := mSet || aSet || in.Valid&(fuse.FATTR_ATIME_NOW|fuse.FATTR_MTIME_NOW) != 0
	if sizeSet {
		if h, ok := f.(*handle); ok {
			h.markDirty()
		} else {
			n.setReported(sigOfAttr(&out.Attr))
			n.emitAttr(ctx, capture.KindWrite, &out.Attr)
		}
	}
	// A truncate sets the times implicitly; they are not an extra change.
	if modeSet || uidSet || gidSet || (timesSet && !sizeSet) {
		n.emitAttr(ctx, capture.KindAttrib, &out.Attr)
	}
	return 0
}

func (n *node) emitAttr(ctx context.Context, k capture.Kind, a *fuse.Attr) {
	op := n.fsys.newOp(ctx, k)
	op.Path = n.fsys.mountPath(n.rel())
	op.IsDir = n.isDir()
	op.Inode, op.Mode, op.Size = n.ino, a.Mode, int64(a.Size)
	op.Known |= event.HasInode | event.HasMode | event.HasSize
	n.fsys.emit(op)
}

// Setxattr sets an extended attribute: KindAttrib.
func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if n.fsys.refuse(ctx, "setxattr") {
		return errRefused
	}
	errno := n.LoopbackNode.Setxattr(ctx, attr, data, flags)
	if errno == 0 {
		n.emitXattr(ctx)
	}
	return errno
}

// Removexattr removes an extended attribute: KindAttrib.
func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if n.fsys.refuse(ctx, "removexattr") {
		return errRefused
	}
	errno := n.LoopbackNode.Removexattr(ctx, attr)
	if errno == 0 {
		n.emitXattr(ctx)
	}
	return errno
}

func (n *node) emitXattr(ctx context.Context) {
	op := n.fsys.newOp(ctx, capture.KindAttrib)
	op.Path = n.fsys.mountPath(n.rel())
	op.IsDir = n.isDir()
	op.Inode = n.ino
	op.Known |= event.HasInode
	n.fsys.emit(op)
}

// CopyFileRange copies between two files on the backing file system (the
// server-side copy that cp uses). The bytes count as writes to the
// destination handle.
func (n *node) CopyFileRange(ctx context.Context, fhIn fs.FileHandle, offIn uint64, out *fs.Inode,
	fhOut fs.FileHandle, offOut uint64, length uint64, flags uint64) (uint32, syscall.Errno) {
	if n.fsys.refuse(ctx, "copy_file_range") {
		return 0, errRefused
	}
	hOut, _ := fhOut.(*handle)
	dst := unwrap(fhOut)
	if hOut != nil {
		w, errno := hOut.writable()
		if errno != 0 {
			return 0, errno
		}
		dst = w
		hOut.beginChange()
	}
	count, errno := n.LoopbackNode.CopyFileRange(ctx, unwrap(fhIn), offIn, out, dst, offOut, length, flags)
	if hOut != nil && count > 0 {
		hOut.noteWrite(ctx, int64(offOut), int64(count), false)
	}
	return count, errno
}

// noPassthrough is a read-only loopback file that never asks the kernel for
// passthrough.
type noPassthrough struct{ *fs.LoopbackFile }

var _ fs.FilePassthroughFder = noPassthrough{}

// PassthroughFd declines passthrough.
func (noPassthrough) PassthroughFd() (int, bool) { return 0, false }
