package attackgen

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/packetscope/packetscope/rule"
)

// TestClasses: every class writes frames the guard's parser reads as IP to
// the victim, the same for the same seed, and with the shape it claims.
func TestClasses(t *testing.T) {
	for _, c := range Classes() {
		t.Run(c.Name, func(t *testing.T) {
			a := c.Frames(Config{}, 1, 2000)
			b := c.Frames(Config{}, 1, 2000)
			if len(a) < 2000 || !slices.EqualFunc(a, b, bytes.Equal) {
				t.Fatalf("%d frames, or not reproducible", len(a))
			}
			if other := c.Frames(Config{}, 2, 2000); slices.EqualFunc(a, other, bytes.Equal) {
				t.Errorf("seed 2 gives the same frames as seed 1")
			}
			frag, later := 0, 0
			for i, f := range a {
				p := rule.ParseFrame(f)
				if p.Family == 0 || p.Dst != DefaultVictim && p.Dst != DefaultVictim6 {
					t.Fatalf("frame %d parsed as %+v", i, p)
				}
				if p.Fragment != rule.FragNone {
					frag++
				}
				if p.Fragment == rule.FragLater {
					later++
					if p.HasL4 {
						t.Fatalf("frame %d: a later fragment with an L4 header", i)
					}
				}
			}
			switch c.Name {
			case "dns_amp_frag", "cldap_amp", "frag_flood":
				if later < len(a)/4 {
					t.Errorf("%d of %d frames are later fragments", later, len(a))
				}
			case "ntp_amp", "ssdp_amp", "syn_flood_random", "bulk_upload":
				if frag != 0 {
					t.Errorf("%d fragments", frag)
				}
			}
		})
	}
}

func TestSnapKeepsHeaders(t *testing.T) {
	c, _ := Lookup("dns_amp_frag")
	full := c.Frames(Config{}, 3, 500)
	snap := c.Frames(Config{Snap: 96}, 3, 500)
	for i := range full {
		if len(snap[i]) > 96 {
			t.Fatalf("frame %d: %d bytes", i, len(snap[i]))
		}
		if rule.ParseFrame(full[i]) != rule.ParseFrame(snap[i]) {
			t.Fatalf("frame %d parses differently cut", i)
		}
	}
}

func TestWritePcap(t *testing.T) {
	var buf bytes.Buffer
	frames := Background(Config{}, 1, 300)
	if err := WritePcap(&buf, frames, time.Unix(0, 0), 1000); err != nil {
		t.Fatal(err)
	}
	if buf.Len() < 24+len(frames)*16 {
		t.Fatalf("pcap of %d bytes", buf.Len())
	}
}
