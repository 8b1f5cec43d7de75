package enrich

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// openFile opens p with O_NOATIME, so that reading it changes nothing the
// kernel boundary could report; O_NOATIME needs the file's owner or
// CAP_FOWNER, so without them the file is opened without it. Reads make
// no fanotify event the kernel boundary asks for (it marks modify,
// close-write, create, delete, rename and attrib, never access or open).
func openFile(p string) (*os.File, error) {
	const flags = unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW | unix.O_NONBLOCK
	fd, err := unix.Open(p, flags|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) {
		fd, err = unix.Open(p, flags, 0)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}
