package agentapi

import (
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/packetscope/packetscope/internal/testnet"
	"github.com/vishvananda/netns"
)

func TestNodeAddresses(t *testing.T) {
	node := testnet.NewNS(t, "ps-api")
	gw := testnet.NewNS(t, "ps-api")
	testnet.Link(t, node, "eth0", "10.203.1.1/24,10.203.1.5/24,fd00:203:1::1/64", gw, "eth0", "10.203.1.254/24,fd00:203:1::fe/64")
	testnet.Link(t, node, "eth1", "10.203.2.1/24", gw, "eth1", "10.203.2.254/24")
	node.MustRun("ip", "route", "add", "default", "via", "10.203.1.254")
	node.MustRun("ip", "-6", "route", "add", "default", "via", "fd00:203:1::fe")
	// A default route in another table (policy routing) counts too; a
	// non-default route's gateway does not.
	node.MustRun("ip", "route", "add", "default", "via", "10.203.2.254", "table", "100")
	node.MustRun("ip", "route", "add", "10.203.9.0/24", "via", "10.203.2.200")

	h, err := netns.GetFromName(node.Name)
	if err != nil {
		t.Fatalf("open netns %s: %v", node.Name, err)
	}
	t.Cleanup(func() { _ = h.Close() })

	got, err := NodeAddresses(h)
	if err != nil {
		t.Fatalf("NodeAddresses: %v", err)
	}
	want := []string{
		"10.203.1.1/32", "10.203.1.5/32", "10.203.1.254/32", "10.203.2.1/32", "10.203.2.254/32",
		"127.0.0.1/32", "::1/128", "fd00:203:1::1/128", "fd00:203:1::fe/128",
	}
	var gotStr []string
	linkLocal := netip.MustParsePrefix("fe80::/10")
	for _, p := range got {
		if linkLocal.Contains(p.Addr()) { // the kernel's own, random per veth
			continue
		}
		gotStr = append(gotStr, p.String())
	}
	slices.Sort(gotStr)
	slices.Sort(want)
	if !slices.Equal(gotStr, want) {
		t.Fatalf("node addresses = %v, want %v (plus link-local)", gotStr, want)
	}

	// The cached source used by the window returns the same list and keeps it.
	protected := ProtectedAddresses(slog.New(slog.NewTextHandler(io.Discard, nil)), h, time.Hour)
	if p := protected(); !slices.Equal(p, got) {
		t.Fatalf("ProtectedAddresses = %v, want %v", p, got)
	}
	node.MustRun("ip", "addr", "add", "10.203.1.77/24", "dev", "eth0")
	if p := protected(); !slices.Equal(p, got) {
		t.Fatalf("ProtectedAddresses re-read before its refresh interval: %v", p)
	}
}

func TestProtectedAddressesAddsNeverBlock(t *testing.T) {
	node := testnet.NewNS(t, "ps-api")
	peer := testnet.NewNS(t, "ps-api")
	testnet.Link(t, node, "eth0", "10.203.3.1/24", peer, "eth0", "10.203.3.2/24")
	h, err := netns.GetFromName(node.Name)
	if err != nil {
		t.Fatalf("open netns %s: %v", node.Name, err)
	}
	t.Cleanup(func() { _ = h.Close() })
	never := []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("2001:db8:5::/48")}
	got := ProtectedAddresses(slog.New(slog.DiscardHandler), h, time.Hour, never...)()
	for _, want := range append([]netip.Prefix{netip.MustParsePrefix("10.203.3.1/32")}, never...) {
		if !slices.Contains(got, want) {
			t.Errorf("protected %v lacks %v", got, want)
		}
	}
}

func TestParseNeverBlock(t *testing.T) {
	got, err := ParseNeverBlock([]string{"10.1.2.3", "192.168.7.9/24", "2001:db8::1", "::ffff:10.9.9.9"})
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.1.2.3/32"), netip.MustParsePrefix("192.168.7.0/24"),
		netip.MustParsePrefix("2001:db8::1/128"), netip.MustParsePrefix("10.9.9.9/32")}
	if !slices.Equal(got, want) {
		t.Errorf("ParseNeverBlock = %v, want %v", got, want)
	}
	for _, bad := range []string{"10.0.0.0/33", "nope", "fe80::1%eth0", ""} {
		if _, err := ParseNeverBlock([]string{bad}); err == nil || !strings.Contains(err.Error(), "--guard.never-block") {
			t.Errorf("ParseNeverBlock(%q) = %v, want an error naming the flag", bad, err)
		}
	}
}
