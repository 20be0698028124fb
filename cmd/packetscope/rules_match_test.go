package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/packetscope/packetscope/rule"
)

// TestMatchFlagsFollowRuleMatch: every field of rule.Match has a `rules add`
// flag that sets it, counts as a match given (so it cannot be mixed with
// --stdin), and is printed by describeMatch.
func TestMatchFlagsFollowRuleMatch(t *testing.T) {
	var all rule.Match
	var allArgs []string
	for _, f := range rule.MatchFields() {
		t.Run(f.Name, func(t *testing.T) {
			var want rule.Match
			if err := f.Set(&want, f.Example); err != nil {
				t.Fatal(err)
			}
			_ = f.Set(&all, f.Example)
			arg := "--" + f.Flag + "=" + f.Example
			allArgs = append(allArgs, arg)

			c := newCLI()
			if _, err := c.app.Parse([]string{"rules", "add", arg}); err != nil {
				t.Fatalf("parse %s: %v", arg, err)
			}
			if !reflect.DeepEqual(c.rules.match, want) {
				t.Fatalf("%s set %+v, want %+v", arg, c.rules.match, want)
			}
			c.rules.stdin = true
			if _, err := ruleFromConfig(c.rules); err == nil || !strings.Contains(err.Error(), "not both") {
				t.Fatalf("%s with --stdin: err = %v, want the match flag counted as given", arg, err)
			}
			if got, want := describeMatch(want), f.Name+"="+f.Example; !strings.Contains(got, want) {
				t.Fatalf("describeMatch = %q, want it to hold %q", got, want)
			}
		})
	}
	c := newCLI()
	if _, err := c.app.Parse(append([]string{"rules", "add"}, allArgs...)); err != nil {
		t.Fatalf("parse every match flag: %v", err)
	}
	if !reflect.DeepEqual(c.rules.match, all) {
		t.Fatalf("every match flag set %+v, want %+v", c.rules.match, all)
	}
}
