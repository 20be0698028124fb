package agentapi

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/packetscope/packetscope/rule"
)

func TestClientRoundTrip(t *testing.T) {
	f := newAPIFixture(t, testToken, 10)
	srv := httptest.NewServer(f.h)
	t.Cleanup(srv.Close)
	c := NewClient(srv.URL+"/", testToken, nil)
	ctx := t.Context()

	r, err := rule.ParseRule([]byte(goodRule))
	if err != nil {
		t.Fatal(err)
	}
	added, err := c.AddRule(ctx, r)
	if err != nil {
		t.Fatalf("AddRule: %v", err)
	}
	if added.ID == "" || added.ExpiresAt.IsZero() || added.Match.TCPFlags != "syn,!ack" {
		t.Fatalf("added %+v", added)
	}
	rules, err := c.ListRules(ctx)
	if err != nil || len(rules) != 1 || rules[0].ID != added.ID {
		t.Fatalf("ListRules = %+v, %v", rules, err)
	}

	// A refusal carries the status, message and field.
	bad := r
	bad.Match.Src = "not-an-address"
	_, err = c.AddRule(ctx, bad)
	ae, ok := AsAPIError(err)
	if !ok || ae.Status != 400 || ae.Field != "match.src" || !strings.Contains(ae.Message, "not-an-address") || !ae.IsClientError() {
		t.Fatalf("bad rule: err %v (%+v)", err, ae)
	}
	err = c.DeleteRule(ctx, "missing")
	if ae, ok := AsAPIError(err); !ok || ae.Status != 404 {
		t.Fatalf("delete missing: %v", err)
	}
	if err := c.DeleteRule(ctx, added.ID); err != nil {
		t.Fatalf("DeleteRule: %v", err)
	}

	// Wrong token: 401, and the message says so.
	_, err = NewClient(srv.URL, "wrong", nil).AddRule(ctx, r)
	if ae, ok := AsAPIError(err); !ok || ae.Status != 401 || !strings.Contains(ae.Message, "wrong bearer token") {
		t.Fatalf("wrong token: %v", err)
	}

	now := time.Now()
	rep, err := c.Traffic(ctx, now.Add(-30*time.Second), now, 4)
	if err != nil {
		t.Fatalf("Traffic: %v", err)
	}
	if rep.SampleEvery != 10 || len(rep.Samples) != 4 || rep.Totals.SampledPackets < 30 || rep.Totals.SampledPackets > 31 {
		t.Fatalf("traffic report: every %d, %d samples, totals %+v", rep.SampleEvery, len(rep.Samples), rep.Totals)
	}
	if rep.Samples[3].Packet.Src != netip.MustParseAddr("198.51.100.1") || rep.Samples[3].Interface != "eth0" {
		t.Fatalf("sample %+v did not survive the round trip", rep.Samples[3])
	}

	// Traffic is a sensitive read: the token goes with it, and a wrong one is refused.
	_, err = NewClient(srv.URL, "wrong", nil).Traffic(ctx, now.Add(-30*time.Second), now, 4)
	if ae, ok := AsAPIError(err); !ok || ae.Status != 401 {
		t.Fatalf("traffic with a wrong token: %v", err)
	}

	// An agent that is not there is not an *APIError: the responder retries those.
	srv.Close()
	_, err = c.ListRules(ctx)
	if _, ok := AsAPIError(err); ok || err == nil {
		t.Fatalf("unreachable agent: err %v", err)
	}
	// A malformed base URL fails every call with the reason.
	if _, err := NewClient("127.0.0.1:9436", "", nil).ListRules(ctx); err == nil || !strings.Contains(err.Error(), "parse agent url") {
		t.Fatalf("bad base url: %v", err)
	}
}

func TestClientNonJSONError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "upstream proxy exploded", http.StatusBadGateway)
	}))
	t.Cleanup(srv.Close)
	_, err := NewClient(srv.URL, "", nil).ListRules(t.Context())
	ae, ok := AsAPIError(err)
	if !ok || ae.Status != 502 || ae.Message != "upstream proxy exploded" || ae.IsClientError() {
		t.Fatalf("err %v (%+v)", err, ae)
	}
}
