//go:build variants

// Built only with -tags variants (make bench, or by hand): a development
// tool has no place among the tests CI runs.

package guard

import (
	"cmp"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// TestXDPVariants is a development tool, not a test: it compares XDP
// programs side by side on the same rule table (1,000 fingerprints + 100,000
// CIDRs) by BPF_PROG_TEST_RUN, interleaving the programs round after round so
// that the noise of a shared machine hits them alike. Set PS_VARIANTS to a
// comma-separated list of guard objects built from variants of guard.bpf.c
// (they reuse the loaded guard's maps by name), e.g.
//
//	PS_VARIANTS=/tmp/a.o,/tmp/b.o go test -tags variants ./guard -run TestXDPVariants -v
//
// It always runs the committed guard, xdp-filter and a bare XDP_DROP.
func TestXDPVariants(t *testing.T) {
	env := os.Getenv("PS_VARIANTS")
	g := openTestGuard(t, Config{NoSampling: true, MaxRules: FPSlots + CIDRSlots})
	if os.Getenv("PS_LOADONLY") != "" {
		for _, path := range strings.Split(env, ",") {
			printVerified(path, loadVariant(t, g, path))
		}
		return
	}
	for _, r := range append(benchCIDRs(100_000), benchFingerprints(1000)...) {
		if _, err := g.Rules().Add(r); err != nil {
			t.Fatalf("add %+v: %v", r.Match, err)
		}
	}
	progs := []struct {
		name string
		p    *ebpf.Program
	}{{"guard", g.Program()}}
	for _, path := range strings.Split(env, ",") {
		if path == "" {
			continue
		}
		progs = append(progs, struct {
			name string
			p    *ebpf.Program
		}{path, loadVariant(t, g, path)})
	}
	progs = append(progs, struct {
		name string
		p    *ebpf.Program
	}{"xdp-filter", loadXDPFilter(t, 1)}, struct {
		name string
		p    *ebpf.Program
	}{"bare-drop", bareDrop(t)})

	paths := append(slices.Clone(benchPaths), cidrDropPaths()...)
	if want := os.Getenv("PS_PROFILE"); want != "" {
		for _, p := range paths {
			if p.name == want {
				profileXDP(t, progs[len(progs)-3].p, p)
				return
			}
		}
		t.Fatalf("no path %q", want)
	}
	rounds, n := 9, 300_000
	res := map[string][]float64{}
	for range rounds {
		for _, p := range paths {
			for _, pr := range progs {
				_, per, err := pr.p.Benchmark(p.frame, n, nil)
				if err != nil {
					t.Fatal(err)
				}
				k := pr.name + "|" + p.name
				res[k] = append(res[k], float64(per.Nanoseconds()))
			}
		}
	}
	med := func(v []float64) float64 { v = slices.Clone(v); slices.Sort(v); return v[len(v)/2] }
	fmt.Printf("%-28s", "program (median/min ns)")
	for _, p := range paths {
		fmt.Printf(" %15s", p.name)
	}
	fmt.Println()
	for _, pr := range progs {
		fmt.Printf("%-28s", pr.name)
		for _, p := range paths {
			v := res[pr.name+"|"+p.name]
			fmt.Printf(" %9.0f/%-5.0f", med(v), slices.Min(v))
		}
		fmt.Println()
	}
	for _, pr := range progs {
		printVerified(pr.name, pr.p)
	}
	for _, pr := range progs {
		fmt.Printf("%-28s", "ratio "+pr.name)
		for _, p := range paths {
			a, x := res[pr.name+"|"+p.name], res["xdp-filter|"+p.name]
			r := make([]float64, len(a))
			for i := range a {
				r[i] = a[i] / x[i]
			}
			fmt.Printf(" %15.2f", med(r))
		}
		fmt.Println()
	}
}

// profileXDP runs one program on one frame for a few seconds under
// `perf record -e cpu-clock` and prints where its samples fall, by source
// line (the JIT's line info): the machine has no PMU, the hrtimer samples.
func profileXDP(t *testing.T, prog *ebpf.Program, p benchPath) {
	info, err := prog.Info()
	if err != nil {
		t.Fatal(err)
	}
	lines, err := info.LineInfos()
	if err != nil {
		t.Fatal(err)
	}
	addrs, ok := info.JitedLineInfos()
	if !ok || len(addrs) != len(lines) {
		t.Fatalf("jited line infos: %d for %d lines", len(addrs), len(lines))
	}
	ksyms, _ := info.JitedKsymAddrs()
	flens, _ := info.JitedFuncLens()
	data := t.TempDir() + "/perf.data"
	perf := exec.Command("perf", "record", "-e", "cpu-clock", "-F", "20000", "-a", "-o", data)
	if err := perf.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		if _, _, err := prog.Benchmark(p.frame, 1_000_000, nil); err != nil {
			t.Fatal(err)
		}
	}
	_ = perf.Process.Signal(os.Interrupt)
	_ = perf.Wait()
	out, err := exec.Command("perf", "script", "-i", data, "-F", "ip").Output()
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		addr uint64
		line string
	}
	var ents []entry
	for i, l := range lines {
		ents = append(ents, entry{addrs[i], fmt.Sprintf("%s:%d %s", filepath.Base(l.Line.FileName()), l.Line.LineNumber(), strings.TrimSpace(l.Line.Line()))})
	}
	slices.SortFunc(ents, func(a, b entry) int { return cmp.Compare(a.addr, b.addr) })
	in := func(ip uint64) bool {
		for i, k := range ksyms {
			if ip >= uint64(k) && ip < uint64(k)+uint64(flens[i]) {
				return true
			}
		}
		return false
	}
	counts, total, other := map[string]int{}, 0, 0
	for _, f := range strings.Fields(string(out)) {
		ip, err := strconv.ParseUint(f, 16, 64)
		if err != nil {
			continue
		}
		if !in(ip) {
			other++
			continue
		}
		total++
		i, _ := slices.BinarySearchFunc(ents, ip, func(e entry, ip uint64) int { return cmp.Compare(e.addr, ip+1) })
		if i > 0 {
			counts[ents[i-1].line]++
		}
	}
	type kv struct {
		k string
		v int
	}
	var kvs []kv
	for k, v := range counts {
		kvs = append(kvs, kv{k, v})
	}
	slices.SortFunc(kvs, func(a, b kv) int { return b.v - a.v })
	fmt.Printf("%s on %s: %d samples in the program, %d elsewhere\n", p.name, info.Name, total, other)
	for _, e := range kvs {
		fmt.Printf("%6.1f%%  %s\n", 100*float64(e.v)/float64(total), e.k)
	}
}

// printVerified prints how many instructions the verifier walked for p, when
// the kernel says.
func printVerified(name string, p *ebpf.Program) {
	if info, err := p.Info(); err == nil {
		if n, ok := info.VerifiedInstructions(); ok {
			fmt.Printf("%-28s %d (the kernel's limit: 1,000,000)\n", "verified insns "+name, n)
		}
	}
}
