package testnet

import (
	"os/exec"
	"strings"
	"testing"
)

func TestLinkedNamespacesPingAndCleanUp(t *testing.T) {
	var names []string
	// Registered first, so it runs last: after the namespaces' own cleanups.
	t.Cleanup(func() {
		out, _ := exec.Command("ip", "netns", "list").Output()
		for _, n := range names {
			if strings.Contains(string(out), n) {
				t.Errorf("netns %s left behind", n)
			}
		}
	})
	a := NewNS(t, "ps-tn-a")
	b := NewNS(t, "ps-tn-b")
	names = []string{a.Name, b.Name}
	Link(t, a, "eth0", "10.231.0.1/24,fd00:231::1/64", b, "eth0", "10.231.0.2/24,fd00:231::2/64")
	a.MustRun("ping", "-c", "1", "-W", "2", "10.231.0.2")
	a.MustRun("ping", "-6", "-c", "1", "-W", "2", "fd00:231::2")
}
