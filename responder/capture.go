package responder

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/packetscope/packetscope/rule"
)

// ReadCaptureFile reads a pcap or pcapng file and parses every frame with
// guard.ParseFrame, so offline analysis sees exactly what the XDP guard sees.
func ReadCaptureFile(path string) ([]rule.Packet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open capture: %w", err)
	}
	defer f.Close()
	pkts, err := ReadCapture(f)
	if err != nil {
		return nil, fmt.Errorf("read capture %s: %w", path, err)
	}
	return pkts, nil
}

// ReadCapture reads pcap or pcapng from r (told apart by the magic number).
// Ethernet and raw-IP link types are supported; raw IP gets a synthetic
// Ethernet header so ParseFrame reads it.
func ReadCapture(r io.Reader) ([]rule.Packet, error) {
	br := bufio.NewReader(r)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("read magic: %w", err)
	}
	var (
		next     func() ([]byte, error)
		linkType layers.LinkType
	)
	if bytes.Equal(magic, []byte{0x0a, 0x0d, 0x0d, 0x0a}) {
		ng, err := pcapgo.NewNgReader(br, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			return nil, fmt.Errorf("open pcapng: %w", err)
		}
		linkType = ng.LinkType()
		next = func() ([]byte, error) { d, _, err := ng.ReadPacketData(); return d, err }
	} else {
		pr, err := pcapgo.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("open pcap: %w", err)
		}
		linkType = pr.LinkType()
		next = func() ([]byte, error) { d, _, err := pr.ReadPacketData(); return d, err }
	}
	var prefix func(data []byte) []byte
	switch linkType {
	case layers.LinkTypeEthernet:
		prefix = func(d []byte) []byte { return d }
	case layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6, 12: // 12: raw IP on some BSDs
		prefix = func(d []byte) []byte {
			eth := make([]byte, 14, 14+len(d))
			eth[12], eth[13] = 0x08, 0x00
			if len(d) > 0 && d[0]>>4 == 6 {
				eth[12], eth[13] = 0x86, 0xdd
			}
			return append(eth, d...)
		}
	default:
		return nil, fmt.Errorf("link type %v is not supported (Ethernet or raw IP)", linkType)
	}
	var out []rule.Packet
	for {
		d, err := next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("read packet %d: %w", len(out)+1, err)
		}
		out = append(out, rule.ParseFrame(prefix(d)))
	}
}
