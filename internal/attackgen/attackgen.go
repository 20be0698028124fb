// Package attackgen writes attack traffic for tests and benchmarks of the
// defense loop: reflection and amplification floods (DNS with fragmented
// answers, NTP, SSDP, memcached, CLDAP, SNMP, chargen, and services no alert
// rule names: IKE, an IoT discovery port), TCP floods across flag
// combinations with randomized or constant fields, spoofed and few-source
// variants, multi-vector mixes, and the heavy legitimate traffic a node
// serves (bulk transfers both ways, many parallel connections, bursts of
// short requests) that must never be taken for an attack.
//
// Everything is seeded and reproducible. Frames are real Ethernet frames
// built with gopacket (see build.go) and can be written as pcap for replay.
//
// Some classes are HELD OUT (Class.HeldOut): they were not looked at while
// the fingerprint miner was tuned, and tests check them last, as attacks the
// defense has never seen.
package attackgen

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// DefaultVictim is the attacked node's address: the one the real captures
// in responder/testdata use, so replay tooling rewrites both alike.
var DefaultVictim = netip.MustParseAddr("10.10.10.10")

// DefaultVictim6 is the node's IPv6 address, for the clients that use IPv6.
var DefaultVictim6 = netip.MustParseAddr("2001:db8:10::10")

// Config says whom the traffic is for and how it is written.
type Config struct {
	Victim  netip.Addr // default DefaultVictim
	Victim6 netip.Addr // default DefaultVictim6
	Snap    int        // cut frames to this many bytes (a header-only capture); 0 keeps them whole
}

// Class is one kind of traffic the generator writes.
type Class struct {
	Name    string
	Alert   string // the attack label of the alert this traffic raises ("" if none should fire)
	Legit   bool   // heavy legitimate traffic: no rule may drop it
	HeldOut bool   // not used while tuning: checked last, as an unseen attack
	// Mimic: the attack copies the headers of the node's real clients, so
	// no header fingerprint separates it: a defense must then refuse to
	// drop rather than cut the clients (SYN cookies are the answer there).
	Mimic bool
	Doc   string
	gen   func(g *gen, n int)
}

// gen is the state one class's generation carries.
type gen struct {
	r       *rand.Rand
	b       *builder
	victim  netip.Addr
	victim6 netip.Addr
	out     [][]byte
}

func (g *gen) add(frames ...[]byte) { g.out = append(g.out, frames...) }

// Frames returns about n frames of the class (a fragmented datagram is
// never cut short), the same for the same seed.
func (c Class) Frames(cfg Config, seed uint64, n int) [][]byte {
	g := newGen(cfg, seed, c.Name)
	for len(g.out) < n {
		c.gen(g, n-len(g.out))
	}
	return g.out
}

func newGen(cfg Config, seed uint64, name string) *gen {
	if !cfg.Victim.IsValid() {
		cfg.Victim = DefaultVictim
	}
	var h uint64
	for _, c := range name {
		h = h*131 + uint64(c)
	}
	if !cfg.Victim6.IsValid() {
		cfg.Victim6 = DefaultVictim6
	}
	return &gen{r: rand.New(rand.NewPCG(seed, h)), b: newBuilder(cfg.Snap), victim: cfg.Victim, victim6: cfg.Victim6}
}

// Classes returns every class: attacks first, then heavy legitimate traffic.
func Classes() []Class { return slices.Clone(classes) }

// Lookup returns the class with this name.
func Lookup(name string) (Class, bool) {
	i := slices.IndexFunc(classes, func(c Class) bool { return c.Name == name })
	if i < 0 {
		return Class{}, false
	}
	return classes[i], true
}

// Mix interleaves frame sets (seeded): what a window holds while an attack
// runs beside ordinary traffic.
func Mix(seed uint64, sets ...[][]byte) [][]byte {
	var out [][]byte
	for _, s := range sets {
		out = append(out, s...)
	}
	r := rand.New(rand.NewPCG(seed, 5))
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// WritePcap writes frames as a pcap (Ethernet), pps frames per second of
// capture time from start.
func WritePcap(w io.Writer, frames [][]byte, start time.Time, pps int) error {
	pw := pcapgo.NewWriter(w)
	if err := pw.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		return fmt.Errorf("write pcap header: %w", err)
	}
	gap := time.Second / time.Duration(max(pps, 1))
	for i, f := range frames {
		ci := gopacket.CaptureInfo{Timestamp: start.Add(time.Duration(i) * gap), CaptureLength: len(f), Length: len(f)}
		if err := pw.WritePacket(ci, f); err != nil {
			return fmt.Errorf("write frame %d: %w", i+1, err)
		}
	}
	return nil
}

// Addresses and header shapes of the Internet the traffic comes from.

// PublicAddr4 is a random global unicast IPv4 address outside private,
// shared (100/8) and loopback space.
func PublicAddr4(r *rand.Rand) netip.Addr {
	for {
		a := netip.AddrFrom4([4]byte{byte(1 + r.IntN(222)), byte(r.IntN(256)), byte(r.IntN(256)), byte(1 + r.IntN(254))})
		if a.IsGlobalUnicast() && !a.IsPrivate() && a.As4()[0] != 100 && a.As4()[0] != 127 {
			return a
		}
	}
}

// PublicAddr6 is a random address in 2001::/16.
func PublicAddr6(r *rand.Rand) netip.Addr {
	var b [16]byte
	b[0], b[1] = 0x20, 0x01
	for i := 2; i < 16; i++ {
		b[i] = byte(r.IntN(256))
	}
	return netip.AddrFrom16(b)
}

// PathTTL is a sender's initial TTL (64, 128 or 255) less its path's hops.
func PathTTL(r *rand.Rand) uint8 {
	base := []int{64, 64, 64, 128, 128, 255}[r.IntN(6)]
	return uint8(base - 3 - r.IntN(25))
}

// Ephemeral is a random port of Linux's ephemeral range.
func Ephemeral(r *rand.Rand) uint16 { return uint16(32768 + r.IntN(28000)) }

// host is a remote address with its path's TTL and an IP ID counter.
type host struct {
	addr netip.Addr
	ttl  uint8
	id   uint16
}

// to is the node's address in h's family.
func (g *gen) to(h *host) netip.Addr {
	if h.addr.Is6() {
		return g.victim6
	}
	return g.victim
}

func (h *host) hdr(dst netip.Addr) ipHeader {
	h.id++
	return ipHeader{src: h.addr, dst: dst, ttl: h.ttl, id: h.id}
}

func hosts(r *rand.Rand, n int) []*host {
	out := make([]*host, n)
	for i := range out {
		out[i] = &host{addr: PublicAddr4(r), ttl: PathTTL(r), id: uint16(r.IntN(65536))}
	}
	return out
}
