package testnet

import (
	"os/exec"
	"strings"
	"testing"
	"time"
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

func TestFirstSentSeesTheFirstPacketOnly(t *testing.T) {
	RequireRoot(t)
	a := NewNS(t, "ps-fs-a")
	b := NewNS(t, "ps-fs-b")
	Link(t, a, "eth0", "10.232.0.1/24", b, "eth0", "10.232.0.2/24")
	w := WatchFirstSent(t, a)
	time.Sleep(300 * time.Millisecond)
	if _, ok := w.At(); ok {
		t.Fatalf("a first packet before anything was sent")
	}
	before := time.Now()
	a.MustRun("ping", "-c", "1", "-W", "2", "10.232.0.2")
	after := time.Now()
	// b's reply arrives in a: incoming, not counted; only a's echo request
	// (which the reader may still be taking in when ping has its reply).
	var at time.Time
	var ok bool
	for deadline := time.Now().Add(time.Second); !ok && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		at, ok = w.At()
	}
	if !ok || at.Before(before) || at.After(after) {
		t.Fatalf("first packet at %v (seen %v): want between %v and %v", at, ok, before, after)
	}
	time.Sleep(200 * time.Millisecond)
	a.MustRun("ping", "-c", "1", "-W", "2", "10.232.0.2")
	if again, _ := w.At(); !again.Equal(at) {
		t.Errorf("the first packet's time moved from %v to %v", at, again)
	}
}
