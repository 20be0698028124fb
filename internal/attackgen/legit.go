package attackgen

import (
	"math/rand/v2"
	"net/netip"

	"github.com/gopacket/gopacket/layers"
)

// stream is one direction of a TCP connection that moves data.
type stream struct {
	src          *host
	sport, dport uint16
	dst          netip.Addr
	seq, ack     uint32
	win          uint16
}

func (s *stream) segment(g *gen, flags uint8, payload int) []byte {
	seg := tcpSeg{sport: s.sport, dport: s.dport, flags: flags, window: s.win, seq: s.seq, ack: s.ack, options: 12, payload: payload}
	s.seq += uint32(payload)
	// Receive-buffer autotuning moves the advertised window now and then.
	if g.r.IntN(50) == 0 {
		s.win = uint16(min(int(s.win)+g.r.IntN(2048), 65535))
	}
	return g.b.tcp(s.src.hdr(s.dst), seg)
}

// bulk writes full-size data segments of parallel streams: from the peers to
// the node's port 443 (toNode: an upload the node serves) or from the
// peers' port 443 to the node's ephemeral ports (a download the node makes).
// Every write's last segment carries PSH and is often short.
func bulk(g *gen, n int, peers []*host, streams int, toNode bool) {
	ss := make([]*stream, streams)
	for i := range ss {
		s := &stream{src: peers[i%len(peers)], dst: g.victim, seq: g.r.Uint32(), ack: g.r.Uint32(), win: uint16(500 + g.r.IntN(3000))}
		if toNode {
			s.sport, s.dport = Ephemeral(g.r), 443
		} else {
			s.sport, s.dport = 443, Ephemeral(g.r)
		}
		ss[i] = s
	}
	for len(g.out) < n {
		s := ss[g.r.IntN(len(ss))]
		if g.r.IntN(16) == 0 {
			g.add(s.segment(g, 0x18, 1+g.r.IntN(1448)))
			continue
		}
		g.add(s.segment(g, 0x10, 1448))
	}
}

// shortConn writes one short request from a client to the node's port:
// handshake, request, the client's ACKs of the answer, FIN.
func shortConn(g *gen, client *host, port uint16) {
	s := &stream{src: client, sport: Ephemeral(g.r), dport: port, dst: g.to(client), seq: g.r.Uint32(), win: []uint16{64240, 65535, 29200}[g.r.IntN(3)]}
	syn := tcpSeg{sport: s.sport, dport: port, flags: 0x02, window: s.win, seq: s.seq, options: []int{20, 12, 24}[g.r.IntN(3)]}
	g.add(g.b.tcp(client.hdr(g.to(client)), syn))
	s.seq++
	s.win = uint16(500 + g.r.IntN(2000)) // scaled from here on
	g.add(s.segment(g, 0x10, 0))
	g.add(s.segment(g, 0x18, 80+g.r.IntN(600)))
	for range 1 + g.r.IntN(10) {
		g.add(s.segment(g, 0x10, 0))
	}
	g.add(s.segment(g, 0x11, 0))
	g.add(s.segment(g, 0x10, 0))
}

// laterFragment is an IPv4 fragment at offset (in 8-byte units) with size
// bytes of data and no L4 header.
func (b *builder) laterFragment(h ipHeader, offset uint16, size int) []byte {
	ip := h.v4(layers.IPProtocolUDP)
	ip.FragOffset = offset
	return b.serialize(eth(false), ip, payload(size))
}

// Background returns about n frames of a busy server's ordinary traffic:
// short HTTPS/HTTP requests from many clients (some IPv6), bulk transfers
// both ways, the replies to the node's own connections, DNS answers from its
// two resolvers (now and then a large one, fragmented), QUIC, NTP, pings and
// the odd ICMP error or reset. Different seeds give different clients and
// flows, as two windows of the same day do.
func Background(cfg Config, seed uint64, n int) [][]byte {
	g := newGen(cfg, seed, "background")
	r := g.r
	clients := hosts(r, 3000)
	for i := range clients {
		if i%10 == 0 {
			clients[i].addr = PublicAddr6(r)
		}
	}
	servers := hosts(r, 40)
	resolvers := hosts(rand.New(rand.NewPCG(1, 1)), 2) // the node's resolvers do not change between windows
	ntp := hosts(rand.New(rand.NewPCG(2, 2)), 4)
	var up, down []*stream
	for i := range 3 {
		c := clients[r.IntN(len(clients))]
		up = append(up, &stream{src: c, sport: Ephemeral(r), dport: []uint16{443, 22, 443}[i], dst: g.to(c), seq: r.Uint32(), win: uint16(500 + r.IntN(3000))})
		down = append(down, &stream{src: servers[r.IntN(len(servers))], sport: 443, dport: Ephemeral(r), dst: g.victim, seq: r.Uint32(), win: uint16(500 + r.IntN(3000))})
	}
	quic := make([]struct {
		h     *host
		sport uint16
	}, 200)
	for i := range quic {
		quic[i].h, quic[i].sport = clients[r.IntN(len(clients))], Ephemeral(r)
	}
	for len(g.out) < n {
		x := r.IntN(1000)
		switch {
		case x < 300:
			c := clients[r.IntN(len(clients))]
			shortConn(g, c, []uint16{443, 443, 443, 80, 8080}[r.IntN(5)])
		case x < 450:
			s := up[r.IntN(len(up))]
			g.add(s.segment(g, []uint8{0x10, 0x10, 0x10, 0x18}[r.IntN(4)], 1448))
		case x < 600:
			s := down[r.IntN(len(down))]
			g.add(s.segment(g, []uint8{0x10, 0x10, 0x10, 0x18}[r.IntN(4)], 1448))
		case x < 700: // replies to the node's own connections, new or reused (keep-alive, pools)
			sv := servers[r.IntN(len(servers))]
			s := &stream{src: sv, sport: []uint16{443, 80, 5432}[r.IntN(3)], dport: Ephemeral(r), dst: g.victim, seq: r.Uint32(), win: 65160}
			if r.IntN(4) == 0 {
				g.add(g.b.tcp(sv.hdr(g.victim), tcpSeg{sport: s.sport, dport: s.dport, flags: 0x12, window: 65160, seq: s.seq, options: 20}))
			}
			for range 1 + r.IntN(5) {
				g.add(s.segment(g, 0x18, 100+r.IntN(1300)))
			}
			g.add(s.segment(g, 0x11, 0))
		case x < 800:
			res := resolvers[r.IntN(2)]
			size := 40 + r.IntN(450)
			if r.IntN(200) == 0 {
				size = 1600 + r.IntN(1500) // a DNSSEC answer, fragmented
			}
			g.add(g.b.udp(res.hdr(g.victim), 53, Ephemeral(r), size)...)
		case x < 900:
			q := quic[r.IntN(len(quic))]
			g.add(g.b.udp(q.h.hdr(g.to(q.h)), q.sport, 443, 1200+r.IntN(150))...)
		case x < 910:
			g.add(g.b.udp(ntp[r.IntN(4)].hdr(g.victim), 123, 123, 48)...)
		case x < 970:
			c := clients[r.IntN(len(clients))]
			if c.addr.Is4() {
				g.add(g.b.icmp(c.hdr(g.victim), []uint8{8, 0}[r.IntN(2)], 0, 56))
			}
		case x < 980:
			sv := servers[r.IntN(len(servers))]
			g.add(g.b.icmp(sv.hdr(g.victim), []uint8{3, 3, 11}[r.IntN(3)], 3, 28+r.IntN(8)*8))
		default:
			c := clients[r.IntN(len(clients))]
			g.add(g.b.tcp(c.hdr(g.to(c)), tcpSeg{sport: Ephemeral(r), dport: 443, flags: []uint8{0x04, 0x14}[r.IntN(2)], seq: r.Uint32()}))
		}
	}
	return g.out
}
