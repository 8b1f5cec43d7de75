package procinfo

import (
	"bytes"
	"strconv"
)

// ParseStat extracts comm (field 2) and starttime (field 22, clock ticks
// since boot) from the contents of /proc/PID/stat. comm may hold spaces
// and parentheses, so the fields after it are counted from the last ')'.
func ParseStat(b []byte) (comm string, start uint64, ok bool) {
	open := bytes.IndexByte(b, '(')
	closeP := bytes.LastIndexByte(b, ')')
	if open < 0 || closeP < open {
		return "", 0, false
	}
	rest := b[closeP+1:]
	field := 0
	for i := 0; i < len(rest); {
		for i < len(rest) && rest[i] == ' ' {
			i++
		}
		j := i
		for j < len(rest) && rest[j] != ' ' && rest[j] != '\n' {
			j++
		}
		if j == i {
			break
		}
		field++
		if field == 20 {
			v, err := strconv.ParseUint(string(rest[i:j]), 10, 64)
			if err != nil {
				return "", 0, false
			}
			return string(b[open+1 : closeP]), v, true
		}
		i = j
	}
	return "", 0, false
}

// parseStatus extracts Tgid and the effective uid and gid (the second
// value of the Uid: and Gid: lines) from /proc/PID/status.
func parseStatus(b []byte) (tgid int32, uid, gid uint32, ok bool) {
	var have int
	for len(b) > 0 && have != 7 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		var bit int
		switch {
		case bytes.HasPrefix(line, []byte("Tgid:")):
			bit = 1
		case bytes.HasPrefix(line, []byte("Uid:")):
			bit = 2
		case bytes.HasPrefix(line, []byte("Gid:")):
			bit = 4
		default:
			continue
		}
		f := bytes.Fields(line[bytes.IndexByte(line, ':')+1:])
		idx := 1
		if bit == 1 {
			idx = 0
		}
		if len(f) <= idx {
			return 0, 0, 0, false
		}
		v, err := strconv.ParseUint(string(f[idx]), 10, 32)
		if err != nil {
			return 0, 0, 0, false
		}
		switch bit {
		case 1:
			if v == 0 || v > 1<<31-1 {
				return 0, 0, 0, false
			}
			tgid = int32(v)
		case 2:
			uid = uint32(v)
		case 4:
			gid = uint32(v)
		}
		have |= bit
	}
	return tgid, uid, gid, have == 7
}
