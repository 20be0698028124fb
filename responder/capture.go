package responder

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"

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
	next, err := newFrameReader(bufio.NewReader(r))
	if err != nil {
		return nil, err
	}
	var out []rule.Packet
	for {
		d, link, err := next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("read packet %d: %w", len(out)+1, err)
		}
		switch link {
		case linkEthernet:
		case linkRaw, linkIPv4, linkIPv6, linkRawBSD:
			d = withEthernet(d)
		default:
			return nil, fmt.Errorf("link type %d is not supported (Ethernet or raw IP)", link)
		}
		out = append(out, rule.ParseFrame(d))
	}
}

// withEthernet puts a synthetic Ethernet header before a raw IP packet, so
// that ParseFrame reads it.
func withEthernet(d []byte) []byte {
	eth := make([]byte, 14, 14+len(d))
	eth[12], eth[13] = 0x08, 0x00
	if len(d) > 0 && d[0]>>4 == 6 {
		eth[12], eth[13] = 0x86, 0xdd
	}
	return append(eth, d...)
}
