package bridge

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestFanotifyConstants pins the table's mask bits to the kernel headers.
func TestFanotifyConstants(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want uint64
	}{
		{"FAN_MODIFY", FanModify, unix.FAN_MODIFY},
		{"FAN_ATTRIB", FanAttrib, unix.FAN_ATTRIB},
		{"FAN_CLOSE_WRITE", FanCloseWrite, unix.FAN_CLOSE_WRITE},
		{"FAN_MOVED_FROM", FanMovedFrom, unix.FAN_MOVED_FROM},
		{"FAN_MOVED_TO", FanMovedTo, unix.FAN_MOVED_TO},
		{"FAN_CREATE", FanCreate, unix.FAN_CREATE},
		{"FAN_DELETE", FanDelete, unix.FAN_DELETE},
		{"FAN_DELETE_SELF", FanDeleteSelf, unix.FAN_DELETE_SELF},
		{"FAN_MOVE_SELF", FanMoveSelf, unix.FAN_MOVE_SELF},
		{"FAN_Q_OVERFLOW", FanQOverflow, unix.FAN_Q_OVERFLOW},
		{"FAN_RENAME", FanRename, unix.FAN_RENAME},
		{"FAN_ONDIR", FanOnDir, unix.FAN_ONDIR},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %#x, want %#x", tc.name, tc.got, tc.want)
		}
	}
}
