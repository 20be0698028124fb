package bpf

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// kernelAtLeast compares a release such as "6.1.0-57-cloud-amd64" with a
// "major.minor" version.
func kernelAtLeast(t *testing.T, release, version string) bool {
	t.Helper()
	num := func(s string) [2]int {
		var out [2]int
		for i, p := range strings.SplitN(s, ".", 3)[:2] {
			end := strings.IndexFunc(p, func(r rune) bool { return r < '0' || r > '9' })
			if end >= 0 {
				p = p[:end]
			}
			n, err := strconv.Atoi(p)
			if err != nil {
				t.Fatalf("parse kernel version %q: %v", s, err)
			}
			out[i] = n
		}
		return out
	}
	r, v := num(release), num(version)
	return r[0] > v[0] || r[0] == v[0] && r[1] >= v[1]
}

// TestFeaturesMatchKernelVersion checks each BTF probe against the version
// the feature table claims for it, on whatever kernel runs the test (the
// host's, and Debian's 6.1 under qemu in make test-kernels).
func TestFeaturesMatchKernelVersion(t *testing.T) {
	if _, err := os.Stat(BTFPath); err != nil {
		t.Fatalf("no kernel BTF at %s: the feature probes need it", BTFPath)
	}
	features, err := KernelFeatures()
	if err != nil {
		t.Fatal(err)
	}
	release := KernelRelease()
	if len(features) != len(featureSpecs) {
		t.Fatalf("got %d features, want %d", len(features), len(featureSpecs))
	}
	for _, f := range features {
		if want := kernelAtLeast(t, release, f.Since); f.Enabled != want {
			t.Errorf("feature %s (since Linux %s) enabled=%v on Linux %s, want %v", f.Name, f.Since, f.Enabled, release, want)
		}
		if f.Without == "" {
			t.Errorf("feature %s says nothing about what is lost without it", f.Name)
		}
	}
}

func TestLoadErrorNamesProgram(t *testing.T) {
	err := loadError(errorString(`program kfree_skb: fixing up kfuncs: kfunc "bpf_rdonly_cast": not supported`))
	if !strings.Contains(err.Error(), "stack program kfree_skb") || strings.Contains(err.Error(), "field KfreeSkb") {
		t.Errorf("error = %q, want it to name the program kfree_skb", err)
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

func TestReleaseAtLeast(t *testing.T) {
	for _, tc := range []struct {
		release string
		want    bool
	}{
		{"6.1.0-57-cloud-amd64", true},
		{"6.18.0", true},
		{"7.0.1", true},
		{"5.15.0-91-generic", false},
		{"6.0.19", false},
		{"garbage", true},
	} {
		if got := releaseAtLeast(tc.release, MinKernel); got != tc.want {
			t.Errorf("releaseAtLeast(%q) = %v, want %v", tc.release, got, tc.want)
		}
	}
}
