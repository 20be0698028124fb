package rule

import (
	"reflect"
	"testing"
)

// TestMatchFieldsDocumented: every field of Match is offered by the schema
// (a known kind, a description, a valid example, a CLI flag of its own), and
// matchFieldDocs describes no field Match lacks. A field added to Match and
// nowhere else fails here until matchFieldDocs describes it.
func TestMatchFieldsDocumented(t *testing.T) {
	fields := MatchFields()
	if n := reflect.TypeFor[Match]().NumField(); len(fields) != n {
		t.Fatalf("MatchFields lists %d fields, Match has %d", len(fields), n)
	}
	flags := map[string]string{}
	for _, f := range fields {
		t.Run(f.Name, func(t *testing.T) {
			if f.Kind == MatchKindUnknown {
				t.Fatalf("Match.%s has a Go type the schema cannot offer: use string, []string or *int, or teach kindOf", f.GoName)
			}
			if f.Description == "" || f.Example == "" {
				t.Fatalf("match field %s has no description or example: add it to matchFieldDocs", f.Name)
			}
			if other, dup := flags[f.Flag]; dup {
				t.Fatalf("flag --%s is both %s's and %s's", f.Flag, other, f.Name)
			}
			flags[f.Flag] = f.Name

			var m Match
			if err := f.Set(&m, f.Example); err != nil {
				t.Fatalf("set example %q: %v", f.Example, err)
			}
			if got, ok := f.Format(m); !ok || got != f.Example {
				t.Fatalf("format after set: %q, %v; want %q", got, ok, f.Example)
			}
			if m.IsEmpty() {
				t.Fatal("a match with the field set is empty")
			}
			if _, err := m.Compile(); err != nil {
				t.Fatalf("example %q does not compile: %v", f.Example, err)
			}
			for _, v := range f.Enum {
				var m Match
				if err := f.Set(&m, v); err != nil {
					t.Fatalf("set enum value %q: %v", v, err)
				}
				if _, err := m.Compile(); err != nil {
					t.Fatalf("enum value %q does not compile: %v", v, err)
				}
			}
		})
	}
	for name := range matchFieldDocs {
		found := false
		for _, f := range fields {
			found = found || f.Name == name
		}
		if !found {
			t.Errorf("matchFieldDocs describes %q, which Match does not have", name)
		}
	}
	if !(Match{SrcPorts: []string{}}).IsEmpty() || !(Match{}).IsEmpty() {
		t.Error("a match with no field set is not empty")
	}
}

func TestMatchFieldSet(t *testing.T) {
	field := func(name string) MatchField {
		for _, f := range MatchFields() {
			if f.Name == name {
				return f
			}
		}
		t.Fatalf("no match field %s", name)
		return MatchField{}
	}
	cases := []struct {
		field   string
		values  []string // set in turn, like a repeated flag
		want    string   // Format afterwards
		wantErr bool
	}{
		{"dst_ports", []string{"80,443", " 8000-8080 "}, "80,443,8000-8080", false},
		{"icmp_type", []string{"8"}, "8", false},
		{"icmp_type", []string{"echo"}, "", true},
		{"fragment", []string{"later"}, "later", false},
		{"fragment", []string{"most"}, "", true},
		{"protocol", []string{"udp"}, "udp", false},
	}
	for _, tc := range cases {
		t.Run(tc.field, func(t *testing.T) {
			var m Match
			var err error
			for _, v := range tc.values {
				if err = field(tc.field).Set(&m, v); err != nil {
					break
				}
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if got, _ := field(tc.field).Format(m); got != tc.want {
				t.Fatalf("format %q, want %q", got, tc.want)
			}
		})
	}
}
