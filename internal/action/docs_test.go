package action

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/semprop/semprop/internal/rules"
)

// TestDocsActions: the rule examples of docs/actions.md load and their
// actions pass Check; every built-in type has a section.
func TestDocsActions(t *testing.T) {
	data, err := os.ReadFile("../../docs/actions.md")
	if err != nil {
		t.Skipf("docs not found: %v", err)
	}
	blocks := strings.Split(string(data), "```yaml\n")[1:]
	if len(blocks) == 0 {
		t.Fatal("no yaml blocks in docs/actions.md")
	}
	reg := NewRegistry()
	for i, b := range blocks {
		b = b[:strings.Index(b, "```")]
		set, err := rules.Parse(fmt.Sprintf("docs block %d", i+1), []byte(b))
		if err == nil {
			err = reg.Check(set)
		}
		if err != nil {
			t.Errorf("docs block %d: %v", i+1, err)
		}
	}
	for _, name := range reg.Names() {
		if !strings.Contains(string(data), "### "+name+"\n") {
			t.Errorf("docs/actions.md has no section for %s", name)
		}
	}
}
