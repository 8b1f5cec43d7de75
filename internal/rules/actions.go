package rules

import (
	"regexp"
	"strconv"
	"text/template"

	"go.yaml.in/yaml/v3"
)

// ActionSpec is one entry of a rule's actions: list, as written: the
// action's type and its arguments. Argument strings are Go text/template
// templates rendered over the match when the action runs (package action
// renders them and checks the arguments of each type).
type ActionSpec struct {
	Type string               `json:"type"`
	Args map[string]ActionArg `json:"args,omitempty"`
	Line int                  `json:"line"`
}

// ActionArg is one argument of an action: a string, or a list of strings
// when IsList.
type ActionArg struct {
	Value  string   `json:"value,omitempty"`
	List   []string `json:"list,omitempty"`
	IsList bool     `json:"is_list,omitempty"`
	Line   int      `json:"line"`
}

var actionType = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// parseActions parses a rule's actions: list; every string is parsed as a
// template so that a syntax error is reported at load time.
func parseActions(re ruleError, v *yaml.Node) ([]ActionSpec, error) {
	if v.Kind != yaml.SequenceNode {
		return nil, re.at(v.Line, "actions: want a list such as [{type: emit, event_type: alert}]")
	}
	var out []ActionSpec
	for i, n := range v.Content {
		if n.Kind != yaml.MappingNode {
			return nil, re.at(n.Line, "actions: want a mapping such as {type: emit}")
		}
		which := "action " + strconv.Itoa(i+1)
		a := ActionSpec{Line: n.Line, Args: map[string]ActionArg{}}
		seen := map[string]bool{}
		for j := 0; j+1 < len(n.Content); j += 2 {
			k, val := n.Content[j], n.Content[j+1]
			if seen[k.Value] {
				return nil, re.at(k.Line, "%s: %s: given twice", which, k.Value)
			}
			seen[k.Value] = true
			if k.Value == "type" {
				if val.Kind != yaml.ScalarNode || !actionType.MatchString(val.Value) {
					return nil, re.at(val.Line, "%s: type %q: want a name such as webhook", which, val.Value)
				}
				a.Type = val.Value
				continue
			}
			arg := ActionArg{Line: k.Line}
			switch val.Kind {
			case yaml.ScalarNode:
				arg.Value = val.Value
			case yaml.SequenceNode:
				arg.IsList, arg.List = true, []string{}
				for _, e := range val.Content {
					if e.Kind != yaml.ScalarNode {
						return nil, re.at(e.Line, "%s: %s: want a string or a list of strings", which, k.Value)
					}
					arg.List = append(arg.List, e.Value)
				}
			default:
				return nil, re.at(val.Line, "%s: %s: want a string or a list of strings", which, k.Value)
			}
			for _, s := range append([]string{arg.Value}, arg.List...) {
				if _, err := template.New("").Option("missingkey=zero").Parse(s); err != nil {
					return nil, re.at(k.Line, "%s: %s: %v", which, k.Value, err)
				}
			}
			a.Args[k.Value] = arg
		}
		if a.Type == "" {
			return nil, re.at(n.Line, "%s: type is required", which)
		}
		if len(a.Args) == 0 {
			a.Args = nil
		}
		out = append(out, a)
	}
	return out, nil
}
