package rules_test

import (
	"fmt"
	"os"
	"strings"

	"github.com/semprop/semprop/internal/rules"
)

// Test runs rules over a recorded log and prints each match's data.
func ExampleTest() {
	set, err := rules.Parse("rules.yaml", []byte(`
rules:
  - name: edit-then-delete
    sequence:
      - {as: w, when: 'type == "fs.write"'}
      - {when: 'type == "fs.delete" && subject == w.subject'}
    within: 5s
    by: subject
    output: '{{.w.comm}} wrote then deleted {{.key}}'
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	log := `{"specversion":"1.0","id":"1","source":"s","type":"fs.write","subject":"/a","time":"2026-01-01T00:00:00Z","seq":1,"comm":"vim"}
{"specversion":"1.0","id":"2","source":"s","type":"fs.write","subject":"/b","time":"2026-01-01T00:00:01Z","seq":2,"comm":"vim"}
{"specversion":"1.0","id":"3","source":"s","type":"fs.delete","subject":"/a","time":"2026-01-01T00:00:03Z","seq":3,"comm":"rm"}
`
	if err := rules.Test(os.Stdout, set, strings.NewReader(log), rules.TestOptions{}); err != nil {
		fmt.Println(err)
	}
	// Output:
	// {"rule":"edit-then-delete","key":"/a","seqs":[1,3],"message":"vim wrote then deleted /a","time":"2026-01-01T00:00:03Z"}
}
