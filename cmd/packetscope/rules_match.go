package main

import (
	"fmt"

	"github.com/alecthomas/kingpin/v2"

	"github.com/packetscope/packetscope/rule"
)

// addMatchFlags adds one flag per field of rule.Match (rule.MatchFields), so
// a field added to the schema is a flag of `rules add` too.
func addMatchFlags(cmd *kingpin.CmdClause, m *rule.Match) {
	for _, f := range rule.MatchFields() {
		help := "Match " + f.Description + " (the rule's match." + f.Name + ")"
		if f.Kind == rule.MatchKindList {
			help += "; repeat or comma-separate for a list"
		}
		fl := cmd.Flag(f.Flag, help+".")
		if len(f.Enum) > 0 {
			fl.HintOptions(f.Enum...)
		}
		fl.SetValue(&matchFlag{field: f, match: m})
	}
}

// matchFlag sets one field of a rule.Match from the command line.
type matchFlag struct {
	field rule.MatchField
	match *rule.Match
}

func (f *matchFlag) Set(s string) error {
	if err := f.field.Set(f.match, s); err != nil {
		return fmt.Errorf("--%s: %w", f.field.Flag, err)
	}
	return nil
}

func (f *matchFlag) String() string {
	v, _ := f.field.Format(*f.match)
	return v
}

// IsCumulative lets a list field's flag be repeated (kingpin asks).
func (f *matchFlag) IsCumulative() bool { return f.field.Kind == rule.MatchKindList }
