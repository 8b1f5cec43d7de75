// Package bytesize parses byte counts written as a number with an
// optional unit, as the configuration writes them: 4096, 64MiB, 1GB.
package bytesize

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ErrSize is the error of a text that is not a size.
var ErrSize = errors.New("want a non-negative number with an optional unit (KiB, MiB, GiB, TiB, KB, MB, GB, TB)")

var units = []struct {
	suf string
	m   int64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}

// Parse parses "64MiB", "1GB", "4096" (bytes). It refuses negative sizes
// and sizes that do not fit in an int64.
func Parse(txt string) (int64, error) {
	t := strings.TrimSpace(txt)
	mult := int64(1)
	for _, u := range units {
		if rest, ok := strings.CutSuffix(t, u.suf); ok {
			t, mult = strings.TrimSpace(rest), u.m
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q: %w", txt, ErrSize)
	}
	return n * mult, nil
}

// Size is a byte count that reads itself from text with Parse (YAML and
// JSON strings, flags).
type Size int64

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Size) UnmarshalText(b []byte) error {
	n, err := Parse(string(b))
	if err != nil {
		return err
	}
	*s = Size(n)
	return nil
}

// String writes s in the largest binary unit that divides it.
func (s Size) String() string {
	for i := 3; i >= 0 && s != 0; i-- { // TiB, GiB, MiB, KiB
		if u := units[i]; int64(s)%u.m == 0 {
			return strconv.FormatInt(int64(s)/u.m, 10) + u.suf
		}
	}
	return strconv.FormatInt(int64(s), 10)
}
