package main

import (
	"fmt"
	"slices"

	"github.com/alecthomas/kingpin/v2"
)

// enumFlag is a flag whose value is one of a package's typed constants, so
// the choices a flag offers are the ones the package defines.
type enumFlag[T ~string] struct {
	target  *T
	allowed []T
}

func (e *enumFlag[T]) Set(s string) error {
	if !slices.Contains(e.allowed, T(s)) {
		return fmt.Errorf("%q is not one of %v", s, e.allowed)
	}
	*e.target = T(s)
	return nil
}

func (e *enumFlag[T]) String() string { return string(*e.target) }

// enumVar makes f set target to one of allowed, def by default ("": none,
// the flag is optional).
func enumVar[T ~string](f *kingpin.FlagClause, target *T, def T, allowed ...T) {
	hints := make([]string, len(allowed))
	for i, v := range allowed {
		hints[i] = string(v)
	}
	if def != "" {
		f.Default(string(def))
	}
	f.HintOptions(hints...).SetValue(&enumFlag[T]{target: target, allowed: allowed})
}
