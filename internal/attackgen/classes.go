package attackgen

import "math/rand/v2"

// The classes. Reflection sizes follow what the protocols answer (an NTP
// monlist page is 440 bytes of UDP payload, memcached splits answers into
// 1400-byte datagrams, DNS ANY/DNSSEC and CLDAP answers exceed the MTU and
// arrive fragmented). The victim's port in an amplification is whatever the
// attacker spoofed in its requests: random per request unless said.
var classes = []Class{
	{Name: "dns_amp_frag", Alert: "udp_amplification", Doc: "DNS amplification from ~1500 open resolvers, most answers 3-4 kB and fragmented", gen: func(g *gen, n int) {
		amplify(g, n, hosts(g.r, 1500), ports(53), randomPort, sizes(0.7, 2900, 4100, 900, 1450), 0)
	}},
	{Name: "ntp_amp", Alert: "udp_amplification", Doc: "NTP monlist amplification: 440-byte pages from ~800 servers", gen: func(g *gen, n int) {
		amplify(g, n, hosts(g.r, 800), ports(123), randomPort, sizes(0.9, 440, 440, 100, 440), 0)
	}},
	{Name: "ssdp_amp", Alert: "udp_amplification", Doc: "SSDP amplification from ~3000 home routers, 250-380-byte answers to the victim's port 80", gen: func(g *gen, n int) {
		amplify(g, n, hosts(g.r, 3000), ports(1900), fixedPort(80), sizes(1, 250, 380, 0, 0), 0)
	}},
	{Name: "memcached_amp", Alert: "udp_amplification", Doc: "memcached amplification from ~150 servers, 1400-byte datagrams to the victim's port 11211", gen: func(g *gen, n int) {
		amplify(g, n, hosts(g.r, 150), ports(11211), fixedPort(11211), sizes(0.95, 1408, 1408, 30, 1400), 0)
	}},
	{Name: "cldap_amp", Alert: "udp_amplification", Doc: "CLDAP amplification from ~600 domain controllers, 1.5-3 kB answers, fragmented", gen: func(g *gen, n int) {
		amplify(g, n, hosts(g.r, 600), ports(389), randomPort, sizes(0.8, 1500, 3000, 700, 1400), 0)
	}},
	{Name: "snmp_amp", Alert: "udp_amplification", Doc: "SNMP GetBulk amplification from ~1000 agents, with the reflectors' ICMP errors beside it", gen: func(g *gen, n int) {
		amplify(g, n, hosts(g.r, 1000), ports(161), randomPort, sizes(1, 400, 1400, 0, 0), 0.07)
	}},
	{Name: "dns_amp_icmp", Alert: "udp_amplification", Doc: "DNS amplification plus the ICMP port-unreachable errors of hosts the answers also hit (two vectors)", gen: func(g *gen, n int) {
		amplify(g, n, hosts(g.r, 1200), ports(53), randomPort, sizes(0.5, 2000, 3500, 500, 1400), 0.2)
	}},
	{Name: "dns_amp_few", Alert: "udp_amplification", Doc: "DNS amplification through three open resolvers, fragmented answers", gen: func(g *gen, n int) {
		amplify(g, n, hosts(g.r, 3), ports(53), randomPort, sizes(0.8, 2900, 4000, 900, 1400), 0)
	}},
	{Name: "chargen_amp", Alert: "udp_amplification", HeldOut: true, Doc: "chargen reflection: random 74-1100-byte lines from ~400 old hosts", gen: func(g *gen, n int) {
		amplify(g, n, hosts(g.r, 400), ports(19), randomPort, sizes(1, 74, 1100, 0, 0), 0)
	}},
	{Name: "ike_amp", Alert: "udp_amplification", HeldOut: true, Doc: "IKE (VPN key exchange) reflection from ports 500 and 4500 of ~700 gateways to the victim's 500", gen: func(g *gen, n int) {
		amplify(g, n, hosts(g.r, 700), ports(500, 500, 4500), fixedPort(500), sizes(0.85, 250, 1200, 1, 1400), 0)
	}},
	{Name: "iot_amp", Alert: "udp_amplification", HeldOut: true, Doc: "IoT discovery reflection on a port no rule names (37810, DVR discovery) from ~2500 devices", gen: func(g *gen, n int) {
		amplify(g, n, hosts(g.r, 2500), ports(37810), randomPort, sizes(1, 600, 1300, 0, 0), 0)
	}},
	{Name: "udp_flood_spoofed", Alert: "udp_flood", Doc: "spoofed UDP flood: random sources and ports, a fixed 1024-byte payload", gen: func(g *gen, n int) {
		for range n {
			h := host{addr: PublicAddr4(g.r), ttl: uint8(64 + g.r.IntN(128)), id: uint16(g.r.IntN(65536))}
			g.add(g.b.udp(h.hdr(g.victim), uint16(1024+g.r.IntN(64000)), uint16(1+g.r.IntN(65535)), 1024)...)
		}
	}},
	{Name: "frag_flood", Alert: "fragment_flood", Doc: "spoofed flood of later IP fragments (no L4 header), random offsets and IDs, 1500 bytes", gen: func(g *gen, n int) {
		for range n {
			h := host{addr: PublicAddr4(g.r), ttl: PathTTL(g.r)}
			ip := h.hdr(g.victim)
			ip.id = uint16(g.r.IntN(65536))
			g.add(g.b.laterFragment(ip, uint16(1+g.r.IntN(8000)), 1480))
		}
	}},
	{Name: "syn_flood_random", Alert: "syn_flood", Doc: "spoofed SYN flood from a raw-socket tool that randomizes every field it writes (TTL, window, source port, IP ID, sequence) and sends no options, to port 443", gen: func(g *gen, n int) {
		for range n {
			h := host{addr: PublicAddr4(g.r), ttl: uint8(32 + g.r.IntN(224)), id: uint16(g.r.IntN(65536))}
			g.add(g.b.tcp(h.hdr(g.victim), tcpSeg{sport: uint16(1024 + g.r.IntN(64000)), dport: 443, flags: 0x02, window: uint16(g.r.IntN(65536)), seq: g.r.Uint32()}))
		}
	}},
	{Name: "syn_flood_mimic", Alert: "syn_flood", Mimic: true, Doc: "spoofed SYN flood that copies a Linux client's SYN (20 bytes of options, TTL 64 less the path) and randomizes only the window, to port 443: its headers overlap the node's real clients", gen: func(g *gen, n int) {
		for range n {
			h := host{addr: PublicAddr4(g.r), ttl: PathTTL(g.r), id: uint16(g.r.IntN(65536))}
			g.add(g.b.tcp(h.hdr(g.victim), tcpSeg{sport: Ephemeral(g.r), dport: 443, flags: 0x02, window: uint16(g.r.IntN(65536)), seq: g.r.Uint32(), options: 20}))
		}
	}},
	{Name: "syn_flood_constant", Alert: "syn_flood", Doc: "spoofed SYN flood from a tool with constant fields (window 1024, TTL 255, no options) to random ports", gen: func(g *gen, n int) {
		for range n {
			h := host{addr: PublicAddr4(g.r), ttl: 255, id: uint16(g.r.IntN(65536))}
			g.add(g.b.tcp(h.hdr(g.victim), tcpSeg{sport: uint16(1024 + g.r.IntN(64000)), dport: uint16(1 + g.r.IntN(65535)), flags: 0x02, window: 1024, seq: g.r.Uint32()}))
		}
	}},
	{Name: "syn_flood_flags", Alert: "syn_flood", Doc: "SYN flood with unusual flag combinations (SYN with URG, PSH, ECE/CWR, FIN) to port 80", gen: func(g *gen, n int) {
		combos := []uint8{0x02 | 0x20, 0x02 | 0x08, 0x02 | 0x40 | 0x80, 0x02 | 0x01, 0x02 | 0x08 | 0x20}
		for range n {
			h := host{addr: PublicAddr4(g.r), ttl: uint8(64 - g.r.IntN(20)), id: uint16(g.r.IntN(65536))}
			g.add(g.b.tcp(h.hdr(g.victim), tcpSeg{sport: Ephemeral(g.r), dport: 80, flags: combos[g.r.IntN(len(combos))], window: 512, seq: g.r.Uint32()}))
		}
	}},
	{Name: "ack_flood_spoofed", Alert: "ack_flood", Doc: "spoofed ACK flood to ports 80 and 443: random sequence numbers, windows and TTLs, some with a small payload", gen: func(g *gen, n int) {
		for range n {
			h := host{addr: PublicAddr4(g.r), ttl: uint8(32 + g.r.IntN(200)), id: uint16(g.r.IntN(65536))}
			pl := []int{0, 0, 0, 6}[g.r.IntN(4)]
			g.add(g.b.tcp(h.hdr(g.victim), tcpSeg{sport: uint16(1024 + g.r.IntN(64000)), dport: []uint16{80, 443}[g.r.IntN(2)], flags: 0x10, window: uint16(g.r.IntN(65536)), seq: g.r.Uint32(), ack: g.r.Uint32(), payload: pl}))
		}
	}},
	{Name: "rst_flood", Alert: "rst_flood", Doc: "spoofed RST and RST-ACK flood to random ports", gen: func(g *gen, n int) {
		for range n {
			h := host{addr: PublicAddr4(g.r), ttl: PathTTL(g.r), id: uint16(g.r.IntN(65536))}
			f := []uint8{0x04, 0x14}[g.r.IntN(2)]
			g.add(g.b.tcp(h.hdr(g.victim), tcpSeg{sport: uint16(1 + g.r.IntN(65535)), dport: uint16(1 + g.r.IntN(65535)), flags: f, seq: g.r.Uint32()}))
		}
	}},
	{Name: "tcp_flag_mix", Alert: "syn_flood", Doc: "multi-vector TCP flood: SYN, ACK, FIN-PSH-URG (xmas) and no-flag packets, spoofed, to port 443", gen: func(g *gen, n int) {
		combos := []uint8{0x02, 0x10, 0x01 | 0x08 | 0x20, 0x00}
		for range n {
			h := host{addr: PublicAddr4(g.r), ttl: uint8(40 + g.r.IntN(200)), id: uint16(g.r.IntN(65536))}
			g.add(g.b.tcp(h.hdr(g.victim), tcpSeg{sport: uint16(1024 + g.r.IntN(64000)), dport: 443, flags: combos[g.r.IntN(len(combos))], window: uint16(g.r.IntN(65536)), seq: g.r.Uint32()}))
		}
	}},
	{Name: "tcp_reflection", Alert: "syn_flood", Doc: "TCP SYN-ACK reflection: ~4000 servers on whatever service port each runs answer spoofed SYNs, and retransmit", gen: func(g *gen, n int) {
		refl := hosts(g.r, 4000)
		svc := make([]uint16, len(refl))
		for i := range svc {
			svc[i] = []uint16{80, 443, 443, 22, 25, 8080, 3389, 21, 53, 110, 143, 993}[g.r.IntN(12)]
		}
		for len(g.out) < n {
			i := g.r.IntN(len(refl))
			win := []uint16{65160, 64240, 29200, 65535, 14600}[i%5]
			opts := []int{20, 20, 12, 8, 4}[i%5]
			seg := tcpSeg{sport: svc[i], dport: Ephemeral(g.r), flags: 0x12, window: win, seq: g.r.Uint32(), ack: g.r.Uint32(), options: opts}
			// Servers retransmit an unanswered SYN-ACK a few times.
			for range 1 + g.r.IntN(4) {
				g.add(g.b.tcp(refl[i].hdr(g.victim), seg))
			}
		}
	}},
	{Name: "syn_synack_few", Alert: "syn_flood", HeldOut: true, Doc: "five unspoofed hosts send SYN and SYN-ACK floods mixed, constant fields per host", gen: func(g *gen, n int) {
		src := hosts(g.r, 5)
		for len(g.out) < n {
			i := g.r.IntN(len(src))
			f := []uint8{0x02, 0x12}[g.r.IntN(2)]
			g.add(g.b.tcp(src[i].hdr(g.victim), tcpSeg{sport: uint16(1024 + g.r.IntN(64000)), dport: []uint16{80, 443}[i%2], flags: f, window: uint16(8192 * (1 + i)), seq: g.r.Uint32()}))
		}
	}},

	// Heavy legitimate traffic, with the alert it could raise by volume.
	{Name: "bulk_upload", Alert: "ack_flood", Legit: true, Doc: "one client uploads over 8 parallel TCP streams to the node's port 443: full-size data segments", gen: func(g *gen, n int) {
		bulk(g, n, hosts(g.r, 1), 8, true)
	}},
	{Name: "bulk_download", Alert: "ack_flood", Legit: true, Doc: "the node downloads from two servers' port 443 over 6 streams: data in, its ACKs out", gen: func(g *gen, n int) {
		bulk(g, n, hosts(g.r, 2), 6, false)
	}},
	{Name: "parallel_conns", Alert: "ack_flood", Legit: true, Doc: "one client holds 64 parallel connections to the node's port 80, each moving data", gen: func(g *gen, n int) {
		bulk(g, n, hosts(g.r, 1), 64, true)
	}},
	{Name: "short_requests", Alert: "syn_flood", Legit: true, Doc: "a burst of short HTTP requests from 2000 clients: handshake, request, ACKs, FIN", gen: func(g *gen, n int) {
		cl := hosts(g.r, 2000)
		for len(g.out) < n {
			shortConn(g, cl[g.r.IntN(len(cl))], 80)
		}
	}},
}

// amplify writes reflected answers: each from a reflector of the pool, from
// one of its service ports, to the victim's port, of the size sz draws,
// fragmented when larger than the MTU; icmpShare of the frames are ICMP
// errors (port unreachable) from the reflectors.
func amplify(g *gen, n int, refl []*host, sport func(*rand.Rand, int) uint16, dport func(*rand.Rand) uint16, sz func(*rand.Rand) int, icmpShare float64) {
	for len(g.out) < n {
		i := g.r.IntN(len(refl))
		h := refl[i]
		if g.r.Float64() < icmpShare {
			g.add(g.b.icmp(h.hdr(g.victim), 3, 3, 28+g.r.IntN(3)*8))
			continue
		}
		g.add(g.b.udp(h.hdr(g.victim), sport(g.r, i), dport(g.r), sz(g.r))...)
	}
}

// ports returns a reflector's service port: one of ps, fixed per reflector.
func ports(ps ...uint16) func(*rand.Rand, int) uint16 {
	return func(_ *rand.Rand, i int) uint16 { return ps[i%len(ps)] }
}

func randomPort(r *rand.Rand) uint16 { return uint16(1024 + r.IntN(64500)) }

func fixedPort(p uint16) func(*rand.Rand) uint16 { return func(*rand.Rand) uint16 { return p } }

// sizes draws a UDP payload size: with probability p uniform in [lo, hi],
// else uniform in [lo2, hi2].
func sizes(p float64, lo, hi, lo2, hi2 int) func(*rand.Rand) int {
	return func(r *rand.Rand) int {
		if r.Float64() < p {
			return lo + r.IntN(hi-lo+1)
		}
		return lo2 + r.IntN(max(hi2-lo2, 0)+1)
	}
}
