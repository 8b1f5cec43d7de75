package fusefs

import (
	"context"
	"os"
	"path/filepath"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// The names a node creates (files, directories, nodes, symbolic links) are
// made here rather than by the library's loopback, which follows every
// creation with an lchown to the caller — also when the kernel already gave
// the new object the caller's owner, as it does whenever the caller is the
// daemon's own user (root creating as root). That chown is a syscall on
// every create's critical path, a second inotify/fanotify record (an
// attribute change) for the kernel boundary to read and match, and it
// clears a new file's set-user-ID and set-group-ID bits. Here it is done only
// when the owner differs, so the result is the one the library gives,
// minus the bits a plain create keeps on a local file system.

var daemonIsRoot = os.Geteuid() == 0

// backingPath returns the path on the backing file system of name in the
// directory rel (relative to the root, "" for the root itself).
func (n *node) backingPath(rel, name string) string {
	return filepath.Join(n.RootData.Path, rel, name)
}

// adopt finishes a name that was just created on the backing tree at p
// (fd, if not -1, is open on it): it gives the object to the caller where
// needed, fills out and returns the new inode. On error the caller removes
// the name.
func (n *node) adopt(ctx context.Context, name, p string, fd int, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	var st syscall.Stat_t
	var btime syscall.Timespec
	if err := statx(fd, p, &st, &btime); err != nil {
		return nil, fs.ToErrno(err)
	}
	if c, ok := fuse.FromContext(ctx); ok && daemonIsRoot && (st.Uid != c.Uid || st.Gid != c.Gid) {
		var err error
		if fd >= 0 {
			err = syscall.Fchown(fd, int(c.Uid), int(c.Gid))
		} else {
			err = syscall.Lchown(p, int(c.Uid), int(c.Gid))
		}
		if err == nil {
			err = statx(fd, p, &st, &btime)
		}
		if err != nil {
			return nil, fs.ToErrno(err)
		}
	}
	out.Attr.FromStat(&st)
	child := n.fsys.newNode(n.RootData, n.EmbeddedInode(), name, &st)
	return n.NewInode(ctx, child, stableAttr(n.RootData, &st, &btime)), 0
}

// createFile is LoopbackNode.Create without the unneeded chown; rel is
// n's path relative to the root. With passthrough in effect the new file
// is opened read-only: see anchor.
func (n *node) createFile(ctx context.Context, rel, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, *anchor, syscall.Errno) {
	p := n.backingPath(rel, name)
	fl := int(flags &^ syscall.O_APPEND)
	var a *anchor
	if n.fsys.passthrough.Load() && fl&syscall.O_ACCMODE != syscall.O_RDONLY {
		a = &anchor{flags: fl &^ (syscall.O_CREAT | syscall.O_EXCL | syscall.O_TRUNC)}
		fl = fl&^syscall.O_ACCMODE | syscall.O_RDONLY
	}
	fd, err := syscall.Open(p, fl|syscall.O_CREAT|syscall.O_CLOEXEC, mode)
	if err != nil {
		return nil, nil, nil, fs.ToErrno(err)
	}
	ch, errno := n.adopt(ctx, name, p, fd, out)
	if errno != 0 {
		syscall.Close(fd)
		syscall.Unlink(p)
		return nil, nil, nil, errno
	}
	return ch, fs.NewLoopbackFile(fd), a, 0
}

// mkdir is LoopbackNode.Mkdir without the unneeded chown.
func (n *node) mkdir(ctx context.Context, rel, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return n.makeName(ctx, rel, name, out, func(p string) error { return syscall.Mkdir(p, mode) }, syscall.Rmdir)
}

// mknod is LoopbackNode.Mknod without the unneeded chown.
func (n *node) mknod(ctx context.Context, rel, name string, mode, rdev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return n.makeName(ctx, rel, name, out, func(p string) error { return syscall.Mknod(p, mode, int(rdev)) }, syscall.Unlink)
}

// symlink is LoopbackNode.Symlink without the unneeded chown.
func (n *node) symlink(ctx context.Context, rel, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return n.makeName(ctx, rel, name, out, func(p string) error { return syscall.Symlink(target, p) }, syscall.Unlink)
}

// makeName creates name in n (at rel) with mk and adopts it, removing it
// with undo if that fails.
func (n *node) makeName(ctx context.Context, rel, name string, out *fuse.EntryOut, mk, undo func(p string) error) (*fs.Inode, syscall.Errno) {
	p := n.backingPath(rel, name)
	if err := mk(p); err != nil {
		return nil, fs.ToErrno(err)
	}
	ch, errno := n.adopt(ctx, name, p, -1, out)
	if errno != 0 {
		undo(p)
	}
	return ch, errno
}

// statx stats fd (if not -1) or else p without following a last symbolic
// link, with the birth time the library uses as the inode's generation.
func statx(fd int, p string, st *syscall.Stat_t, btime *syscall.Timespec) error {
	dirfd, flags := unix.AT_FDCWD, unix.AT_SYMLINK_NOFOLLOW
	if fd >= 0 {
		dirfd, p, flags = fd, "", unix.AT_EMPTY_PATH
	}
	var x unix.Statx_t
	if err := unix.Statx(dirfd, p, flags, unix.STATX_BASIC_STATS|unix.STATX_BTIME, &x); err != nil {
		return err
	}
	*st = syscall.Stat_t{
		Dev:     unix.Mkdev(x.Dev_major, x.Dev_minor),
		Ino:     x.Ino,
		Nlink:   uint64(x.Nlink),
		Mode:    uint32(x.Mode),
		Uid:     x.Uid,
		Gid:     x.Gid,
		Rdev:    unix.Mkdev(x.Rdev_major, x.Rdev_minor),
		Size:    int64(x.Size),
		Blksize: int64(x.Blksize),
		Blocks:  int64(x.Blocks),
		Atim:    syscall.Timespec{Sec: x.Atime.Sec, Nsec: int64(x.Atime.Nsec)},
		Mtim:    syscall.Timespec{Sec: x.Mtime.Sec, Nsec: int64(x.Mtime.Nsec)},
		Ctim:    syscall.Timespec{Sec: x.Ctime.Sec, Nsec: int64(x.Ctime.Nsec)},
	}
	*btime = syscall.Timespec{}
	if x.Mask&unix.STATX_BTIME != 0 {
		*btime = syscall.Timespec{Sec: x.Btime.Sec, Nsec: int64(x.Btime.Nsec)}
	}
	return nil
}

// stableAttr is the library's identity of a backing object (its
// LoopbackRoot.idFromStat with genFromBtime): the inode number with the
// device mixed in when it is not the root's, and the birth time as the
// generation. It must match, or a later LOOKUP of the same object would
// make a second inode.
func stableAttr(r *fs.LoopbackRoot, st *syscall.Stat_t, btime *syscall.Timespec) fs.StableAttr {
	swapped := (st.Dev << 32) | (st.Dev >> 32)
	swappedRoot := (r.Dev << 32) | (r.Dev >> 32)
	gen := uint64(1)
	if btime.Sec != 0 || btime.Nsec != 0 {
		gen = uint64(btime.Sec)*1e9 + uint64(btime.Nsec)
	}
	return fs.StableAttr{Mode: st.Mode, Gen: gen, Ino: (swapped ^ swappedRoot) ^ st.Ino}
}
