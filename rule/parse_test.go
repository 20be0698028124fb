package rule_test

import (
	"testing"

	"github.com/packetscope/packetscope/internal/testframe"
	"github.com/packetscope/packetscope/rule"
)

func TestParseFrame(t *testing.T) {
	for _, tc := range testframe.ParseCases {
		t.Run(tc.Name, func(t *testing.T) {
			got := rule.ParseFrame(tc.Frame.Build())
			if got != tc.Want {
				t.Errorf("ParseFrame:\n got %+v\nwant %+v", got, tc.Want)
			}
		})
	}
}

// TestParseFrameNeverPanics feeds every prefix of every case frame.
func TestParseFrameNeverPanics(t *testing.T) {
	for _, tc := range testframe.ParseCases {
		b := tc.Frame.Build()
		for n := 0; n <= len(b); n++ {
			p := rule.ParseFrame(b[:n])
			if p.Family == 0 && (p.Src.IsValid() || p.HasL4) {
				t.Fatalf("%s cut to %d: Family 0 with fields set: %+v", tc.Name, n, p)
			}
		}
	}
}
