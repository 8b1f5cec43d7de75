package monitor

import "testing"

func TestDefaultRulesParse(t *testing.T) {
	f, rules, err := ParseRuleFile(DefaultRules())
	if err != nil {
		t.Fatalf("ParseRuleFile(defaults) = %v", err)
	}
	if len(rules) < 6 || len(f.InhibitRules) == 0 {
		t.Fatalf("defaults: %d rules, %d inhibit rules", len(rules), len(f.InhibitRules))
	}
}
