package responder

import (
	"bytes"
	"flag"
	"net"
	"os"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/packetscope/packetscope/rule"
)

var update = flag.Bool("update", false, "rewrite testdata/ordinary.pcap")

const (
	ordinaryPcap    = "testdata/ordinary.pcap"
	ordinarySeed    = 1001
	ordinaryPackets = 5000
	pcapSnapLen     = 96 // headers are all the guard reads
)

// frameOf builds an Ethernet frame whose headers parse back to p. The IP
// length fields say p.Length; the payload is cut at the snap length as a
// capture would be.
func frameOf(tb testing.TB, p rule.Packet) []byte {
	tb.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}}
	var ls []gopacket.SerializableLayer
	ls = append(ls, eth)
	var l4 []gopacket.SerializableLayer
	var next layers.IPProtocol = layers.IPProtocol(p.Protocol)
	if p.Fragment != rule.FragLater {
		switch p.Protocol {
		case rule.ProtoTCP:
			tcp := &layers.TCP{SrcPort: layers.TCPPort(p.SrcPort), DstPort: layers.TCPPort(p.DstPort), Window: p.TCPWindow, DataOffset: 5,
				FIN: p.TCPFlags&rule.FlagFIN != 0, SYN: p.TCPFlags&rule.FlagSYN != 0, RST: p.TCPFlags&rule.FlagRST != 0,
				PSH: p.TCPFlags&rule.FlagPSH != 0, ACK: p.TCPFlags&rule.FlagACK != 0, URG: p.TCPFlags&rule.FlagURG != 0,
				ECE: p.TCPFlags&rule.FlagECE != 0, CWR: p.TCPFlags&rule.FlagCWR != 0}
			l4 = append(l4, tcp)
		case rule.ProtoUDP:
			l4 = append(l4, &layers.UDP{SrcPort: layers.UDPPort(p.SrcPort), DstPort: layers.UDPPort(p.DstPort), Length: 8})
		case rule.ProtoICMP:
			l4 = append(l4, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(p.ICMPType, 0)})
		case rule.ProtoICMPv6:
			l4 = append(l4, &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(p.ICMPType, 0)})
		}
	}
	if p.Family == 4 {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: p.TTL, Protocol: next, SrcIP: p.Src.AsSlice(), DstIP: p.Dst.AsSlice(), Length: p.Length}
		switch p.Fragment {
		case rule.FragFirst:
			ip.Flags = layers.IPv4MoreFragments
		case rule.FragLater:
			ip.FragOffset = 185
		}
		ls = append(ls, ip)
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ls = append(ls, &layers.IPv6{Version: 6, HopLimit: p.TTL, NextHeader: next, SrcIP: p.Src.AsSlice(), DstIP: p.Dst.AsSlice(), Length: p.Length - 40})
	}
	ls = append(ls, l4...)
	ls = append(ls, gopacket.Payload(make([]byte, 64)))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{}, ls...); err != nil {
		tb.Fatalf("serialize %+v: %v", p, err)
	}
	return buf.Bytes()
}

func writePcap(tb testing.TB, pkts []rule.Packet) []byte {
	var b bytes.Buffer
	w := pcapgo.NewWriter(&b)
	if err := w.WriteFileHeader(pcapSnapLen, layers.LinkTypeEthernet); err != nil {
		tb.Fatal(err)
	}
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for i, p := range pkts {
		f := frameOf(tb, p)
		full := 14 + int(p.Length)
		f = f[:min(len(f), pcapSnapLen)]
		ci := gopacket.CaptureInfo{Timestamp: t0.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(f), Length: max(full, len(f))}
		if err := w.WritePacket(ci, f); err != nil {
			tb.Fatal(err)
		}
	}
	return b.Bytes()
}

// TestOrdinaryPcap keeps testdata/ordinary.pcap (synthesized ordinary
// traffic, the baseline for `packetscope analyze` examples and tests) in
// step with ordinaryTraffic, and proves frames round-trip through
// ReadCapture and guard.ParseFrame. Regenerate with -update.
func TestOrdinaryPcap(t *testing.T) {
	want := ordinaryTraffic(ordinarySeed, ordinaryPackets)
	data := writePcap(t, want)
	if *update {
		if err := os.WriteFile(ordinaryPcap, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadCaptureFile(ordinaryPcap)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d packets, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("packet %d: parsed %+v, want %+v", i, got[i], want[i])
		}
	}
}
