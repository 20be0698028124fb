package guard

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/packetscope/packetscope/rule"
)

// FuzzDecodePinnedDef: the pinned-definition decoder never panics, and what
// it accepts is a valid rule with an id, a clean reason and an expiry no
// later than MaxTTLSeconds (plus slack) from now, which decodes the same
// after the table writes it back.
func FuzzDecodePinnedDef(f *testing.F) {
	for _, s := range []string{
		`{"id":"r1","action":"drop","match":{"protocol":"udp"},"ttl_seconds":600,"origin":"manual","created_at":"2026-12-01T11:59:00Z","expires_at":"2026-12-01T12:09:00Z","packets":0,"bytes":0}`,
		`{"id":"r-2","action":"rate_limit","rate_pps":5,"match":{"src":"203.0.113.0/24"},"ttl_seconds":60,"reason":"a\u202eb","created_at":"2026-12-01T12:00:00.123Z","expires_at":"2026-12-01T12:01:00.123Z"}`,
		`{"id":"r3","action":"monitor","match":{},"ttl_seconds":60,"created_at":"2026-12-01T12:00:00+05:30","expires_at":"9999-12-31T23:59:59Z"}`,
		`{"id":"r1","id":"r2","action":"drop","match":{},"ttl_seconds":60}`,
		`{"id":"r1","action":"drop","match":{},"ttl_seconds":60,"created_at":"2026-12-01T11:59:00Z","expires_at":"2026-12-01T12:09:00Z"}}]]`,
		"", "\x00\x00", `{`, `null`,
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		r, reason := decodePinnedDef(data, now)
		if reason != "" {
			if r.ID != "" || r.Action != "" {
				t.Fatalf("rejected (%s) but returned %+v", reason, r)
			}
			return
		}
		if err := r.Validate(); err != nil || r.ID == "" || !rule.IsCleanText(r.Reason) {
			t.Fatalf("accepted an invalid rule %+v: %v", r, err)
		}
		if r.ExpiresAt.After(now.Add(rule.MaxTTLSeconds*time.Second+expirySlack)) || !r.ExpiresAt.After(r.CreatedAt) {
			t.Fatalf("accepted expiry %v (created %v)", r.ExpiresAt, r.CreatedAt)
		}
		out, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		again, reason := decodePinnedDef(out, now)
		if reason != "" {
			t.Fatalf("its own encoding %s is rejected: %s", out, reason)
		}
		if !again.CreatedAt.Equal(r.CreatedAt) || !again.ExpiresAt.Equal(r.ExpiresAt) {
			t.Fatalf("times changed: %+v vs %+v", r, again)
		}
		again.CreatedAt, again.ExpiresAt = r.CreatedAt, r.ExpiresAt
		if !reflect.DeepEqual(r, again) {
			t.Fatalf("round trip changed the rule:\n %+v\n %+v", r, again)
		}
	})
}
