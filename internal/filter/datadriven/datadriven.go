// Package datadriven runs table tests kept as text files under testdata/:
// each case is a command line, optional input lines, a "----" separator and
// the expected output, ended by a blank line. Running the tests with
// -update rewrites the expected outputs from what the code now produces, to
// be reviewed as a diff.
//
// It is a test helper for the filter and route packages; it is not safe for
// concurrent use by parallel subtests of one file.
package datadriven

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata files with the actual output")

// Case is one test case of a file.
type Case struct {
	Pos      string   // file:line of the command, for messages
	Cmd      string   // the first word of the command line
	Args     []string // the remaining words of the command line
	Input    []string // lines between the command and "----"
	Expected string   // the text after "----", without the final newline
}

type block struct {
	text string // verbatim text (comments, blank lines) or "" for a case
	c    *Case
	head string // command line and input as written
}

// RunFile runs every case in path through run and compares its output with
// the expected text; with -update it rewrites the file instead.
func RunFile(t *testing.T, path string, run func(t *testing.T, c *Case) string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	blocks, err := parse(path, string(data))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for _, b := range blocks {
		if b.c == nil {
			out.WriteString(b.text)
			continue
		}
		got := strings.TrimRight(run(t, b.c), "\n")
		if !*update && got != b.c.Expected {
			t.Errorf("%s: %s\ngot:\n%s\nwant:\n%s", b.c.Pos, b.head, got, b.c.Expected)
		}
		out.WriteString(b.head)
		out.WriteString("----\n")
		if got != "" {
			out.WriteString(got)
			out.WriteString("\n")
		}
		out.WriteString("\n")
	}
	if *update {
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			t.Fatalf("update %s: %v", path, err)
		}
	}
}

func parse(path, data string) ([]block, error) {
	lines := strings.Split(data, "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	var blocks []block
	for i := 0; i < len(lines); {
		line := lines[i]
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			blocks = append(blocks, block{text: line + "\n"})
			i++
			continue
		}
		c := &Case{Pos: fmt.Sprintf("%s:%d", path, i+1)}
		fields := strings.Fields(line)
		c.Cmd, c.Args = fields[0], fields[1:]
		head := line + "\n"
		i++
		for ; i < len(lines) && lines[i] != "----"; i++ {
			c.Input = append(c.Input, lines[i])
			head += lines[i] + "\n"
		}
		if i >= len(lines) {
			return nil, fmt.Errorf("%s: missing ----", c.Pos)
		}
		i++
		var exp []string
		for ; i < len(lines) && lines[i] != ""; i++ {
			exp = append(exp, lines[i])
		}
		if i < len(lines) {
			i++ // the blank line ending the case
		}
		c.Expected = strings.Join(exp, "\n")
		blocks = append(blocks, block{c: c, head: head})
	}
	return blocks, nil
}
