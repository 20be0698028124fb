package guard

import (
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/packetscope/packetscope/agentapi"
	"github.com/packetscope/packetscope/internal/testnet"
	"github.com/packetscope/packetscope/rule"
)

// TestLastGateLive: the agent API in front of a real guard refuses, with the
// operator's own token, the rules that would cut the node off (its own
// address, its gateway, a never-block address, everything), installs
// nothing for them, and still installs a narrow rule that works.
func TestLastGateLive(t *testing.T) {
	victim := testnet.NewNS(t, "ps-lg-v")
	gateway := testnet.NewNS(t, "ps-lg-g")
	attacker := testnet.NewNS(t, "ps-lg-a")
	testnet.Link(t, victim, "vgw", "10.202.60.1/24", gateway, "gw0", "10.202.60.2/24")
	testnet.Link(t, victim, "vatk", "10.202.61.1/24", attacker, "atk0", "10.202.61.2/24")
	attacker.MustRun("ip", "addr", "add", "10.202.61.3/24", "dev", "atk0")
	// The gateway namespace forwards nothing, so the route leads nowhere.
	victim.MustRun("ip", "route", "add", "default", "via", "10.202.60.2")

	pin := testPinPath(t)
	var g *Guard
	if err := victim.Do(func() (err error) {
		g, err = Open(testLogger(t), Config{Interfaces: []string{"vgw", "vatk"}, PinPath: pin, NoSampling: true})
		return err
	}); err != nil {
		t.Fatalf("open guard in %s: %v", victim.Name, err)
	}
	t.Cleanup(func() { _ = g.Close() })
	h, err := netns.GetFromName(victim.Name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	never := []netip.Prefix{netip.MustParsePrefix("10.202.61.3/32")}
	window := agentapi.NewTrafficWindow(agentapi.WindowConfig{MaxAge: time.Minute,
		Protected: agentapi.ProtectedAddresses(testLogger(t), h, time.Second, never...)})
	const token = "lastgate-token"
	srv := httptest.NewServer(agentapi.NewAPI(testLogger(t), g.Rules(), window, token))
	t.Cleanup(srv.Close)
	c := agentapi.NewClient(srv.URL, token, nil)

	ping := func(ns *testnet.NS, from string) bool {
		_, err := ns.Run("ping", "-c", "2", "-i", "0.2", "-W", "1", "-I", from, "10.202.61.1")
		return err == nil
	}
	pingGateway := func() bool {
		_, err := gateway.Run("ping", "-c", "2", "-i", "0.2", "-W", "1", "10.202.60.1")
		return err == nil
	}
	if !ping(attacker, "10.202.61.2") || !pingGateway() {
		t.Fatal("no ping before any rule: the setup is wrong")
	}

	refused := []struct {
		name  string
		r     rule.Rule
		field string
	}{
		{"everything", rule.Rule{Action: rule.ActionDrop}, "match"},
		{"everything of a family", rule.Rule{Action: rule.ActionDrop, Match: rule.Match{Src: "0.0.0.0/0"}}, "match.src"},
		{"the gateway", rule.Rule{Action: rule.ActionDrop, Match: rule.Match{Src: "10.202.60.2", Protocol: "icmp"}}, "match.src"},
		{"the node's subnet", rule.Rule{Action: rule.ActionDrop, Match: rule.Match{Src: "10.202.60.0/24"}}, "match.src"},
		{"to the node", rule.Rule{Action: rule.ActionDrop, Match: rule.Match{Dst: "10.202.61.1", Protocol: "icmp"}}, "match.dst"},
		{"a never-block address", rule.Rule{Action: rule.ActionDrop, Match: rule.Match{Src: "10.202.61.3"}}, "match.src"},
		{"loopback", rule.Rule{Action: rule.ActionRateLimit, RatePPS: 1, Match: rule.Match{Src: "127.0.0.0/8"}}, "match.src"},
		{"whole-domain fields", rule.Rule{Action: rule.ActionDrop, Match: rule.Match{TTL: "0-255", Length: "0-65535"}}, "match"},
	}
	for _, tc := range refused {
		tc.r.TTLSeconds = 600
		_, err := c.AddRule(t.Context(), tc.r)
		ae, ok := agentapi.AsAPIError(err)
		if !ok || ae.Status != 400 || ae.Field != tc.field {
			t.Errorf("%s: %v, want a 400 naming %s", tc.name, err, tc.field)
		}
	}
	if n := g.Rules().Len(); n != 0 {
		t.Fatalf("refused rules reached the guard: %d rules", n)
	}
	if !ping(attacker, "10.202.61.2") || !pingGateway() {
		t.Fatal("traffic stopped after refused rules")
	}

	// A narrow rule still goes in, and works.
	if _, err := c.AddRule(t.Context(), rule.Rule{Action: rule.ActionDrop, TTLSeconds: 600,
		Match: rule.Match{Src: "10.202.61.2", Protocol: "icmp"}}); err != nil {
		t.Fatalf("narrow rule refused: %v", err)
	}
	if ping(attacker, "10.202.61.2") {
		t.Error("the attacker's pings pass its drop rule")
	}
	if !ping(attacker, "10.202.61.3") || !pingGateway() {
		t.Error("the never-block address or the gateway lost its pings to a rule on another source")
	}
}
