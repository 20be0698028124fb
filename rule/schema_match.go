package rule

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// MatchKind is how a match field's value is written.
type MatchKind int

const (
	MatchKindUnknown MatchKind = iota // a Go type the schema does not know how to offer
	MatchKindString                   // a string ("tcp", "200-255")
	MatchKindList                     // a list of strings (["80", "1000-2000"])
	MatchKindInt                      // an optional integer (*int)
)

// matchFieldDoc is what reflection cannot tell about a Match field.
type matchFieldDoc struct {
	Description string   // what it matches, for a model, an operator's --help and docs
	Example     string   // a valid value, as a CLI flag takes it
	Flag        string   // the CLI flag, when it is not the JSON name with '-' for '_'
	Enum        []string // the only values allowed, when there is a short list
}

// matchFieldDocs describes every field of Match, by JSON name. A field of
// Match missing here fails TestMatchFieldsDocumented.
var matchFieldDocs = map[string]matchFieldDoc{
	"src":      {Description: "source address or CIDR, IPv4 or IPv6", Example: "203.0.113.0/24"},
	"dst":      {Description: "destination address or CIDR, IPv4 or IPv6", Example: "192.0.2.10/32"},
	"protocol": {Description: "IP protocol: tcp, udp, icmp, icmpv6 or a number 0-255", Example: "tcp"},
	"src_ports": {Description: `source ports, each "N" or a range "A-B"`, Example: "1000-2000",
		Flag: "src-port"},
	"dst_ports": {Description: `destination ports, each "N" or a range "A-B"`, Example: "25565",
		Flag: "dst-port"},
	"tcp_flags": {Description: `TCP flags set and (with "!") unset, e.g. "syn,!ack"`, Example: "syn,!ack"},
	"icmp_type": {Description: "ICMP or ICMPv6 type 0-255", Example: "8"},
	// --ttl is the rule's lifetime on the CLI.
	"ttl":        {Description: `IP TTL / IPv6 hop limit, "N" or "A-B"`, Example: "200-255", Flag: "ip-ttl"},
	"length":     {Description: `IP packet length in bytes, "N" or "A-B"`, Example: "40-60"},
	"tcp_window": {Description: `TCP window, "N" or "A-B"`, Example: "0-1024"},
	"fragment": {Description: "fragments: any (first or later), none, first, or later (no L4 header)", Example: "first",
		Enum: enumStrings(Fragments)},
}

// MatchField is one field of Match as the interfaces that offer match
// fields see it: the LLM's tool schema, the CLI's flags, a rule printout.
// It is derived from Match's fields and JSON tags and matchFieldDocs.
type MatchField struct {
	Name        string // the rule JSON's name ("src_ports")
	GoName      string // Match's field ("SrcPorts")
	Kind        MatchKind
	Description string
	Example     string
	Flag        string
	Enum        []string

	index int
}

var matchFields = sync.OnceValue(func() []MatchField {
	t := reflect.TypeFor[Match]()
	fields := make([]MatchField, 0, t.NumField())
	for i := range t.NumField() {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			name = sf.Name
		}
		doc := matchFieldDocs[name]
		f := MatchField{Name: name, GoName: sf.Name, Kind: kindOf(sf.Type), Description: doc.Description,
			Example: doc.Example, Flag: doc.Flag, Enum: doc.Enum, index: i}
		if f.Flag == "" {
			f.Flag = strings.ReplaceAll(name, "_", "-")
		}
		fields = append(fields, f)
	}
	return fields
})

// MatchFields lists Match's fields in declaration order.
func MatchFields() []MatchField { return matchFields() }

func kindOf(t reflect.Type) MatchKind {
	switch {
	case t.Kind() == reflect.String:
		return MatchKindString
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		return MatchKindList
	case t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Int:
		return MatchKindInt
	}
	return MatchKindUnknown
}

// Format writes the field's value of m as a CLI flag takes it (a list
// comma-separated); ok is false when the field is not set.
func (f MatchField) Format(m Match) (s string, ok bool) {
	v := reflect.ValueOf(m).Field(f.index)
	if v.IsZero() || v.Kind() == reflect.Slice && v.Len() == 0 {
		return "", false
	}
	switch f.Kind {
	case MatchKindString:
		return v.String(), true
	case MatchKindList:
		return strings.Join(v.Interface().([]string), ","), true
	case MatchKindInt:
		return strconv.FormatInt(v.Elem().Int(), 10), true
	}
	return fmt.Sprint(v.Interface()), true
}

// Set sets the field of m from s as a CLI flag gives it: a list field
// appends each comma-separated item (so a repeated flag adds to the list),
// an integer must be a number, an enumerated field one of its values.
// Whether the value is valid for the field is Validate's to say.
func (f MatchField) Set(m *Match, s string) error {
	v := reflect.ValueOf(m).Elem().Field(f.index)
	switch f.Kind {
	case MatchKindString:
		if len(f.Enum) > 0 && !slices.Contains(f.Enum, s) {
			return fmt.Errorf("%q is not one of %s", s, strings.Join(f.Enum, ", "))
		}
		v.SetString(s)
	case MatchKindList:
		items := v.Interface().([]string)
		for _, it := range strings.Split(s, ",") {
			if it = strings.TrimSpace(it); it != "" {
				items = append(items, it)
			}
		}
		v.Set(reflect.ValueOf(items))
	case MatchKindInt:
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%q is not a number", s)
		}
		v.Set(reflect.ValueOf(&n))
	default:
		return fmt.Errorf("match field %s has a type the schema cannot set", f.Name)
	}
	return nil
}

// IsEmpty reports whether m constrains nothing: such a rule matches every
// packet.
func (m Match) IsEmpty() bool {
	for _, f := range MatchFields() {
		if _, ok := f.Format(m); ok {
			return false
		}
	}
	return true
}

func enumStrings[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}
