package guard

import (
	"errors"
	"reflect"
	"testing"

	"github.com/cilium/ebpf"
)

// loadVariant loads a guard object built from a variant of guard.bpf.c with
// the maps of g (matched by name).
func loadVariant(tb testing.TB, g *Guard, path string) *ebpf.Program {
	tb.Helper()
	spec, err := ebpf.LoadCollectionSpec(path)
	if err != nil {
		tb.Fatal(err)
	}
	repl := map[string]*ebpf.Map{}
	v := reflect.ValueOf(g.objs.Maps()).Elem()
	for i := range v.NumField() {
		name := v.Type().Field(i).Tag.Get("ebpf")
		if _, ok := spec.Maps[name]; ok {
			repl[name] = v.Field(i).Interface().(*ebpf.Map)
		}
	}
	for name, m := range spec.Maps {
		if repl[name] == nil {
			m.Pinning = ebpf.PinNone
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: repl})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			tb.Fatalf("load %s: %+v", path, ve)
		}
		tb.Fatalf("load %s: %v", path, err)
	}
	tb.Cleanup(coll.Close)
	return coll.Programs["guard_xdp"]
}
