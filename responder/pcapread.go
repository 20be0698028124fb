package responder

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// A reader of pcap and pcapng files, for `packetscope analyze`: the frames
// and each one's link type, nothing else. Its own, not gopacket's pcapgo:
// that imports gopacket/layers, whose init fills 5 MB of tables the agent
// (the same binary) would carry resident and have the GC scan, to read
// files only the analyze command opens.

// Link types (LINKTYPE_* of the pcap specification) a capture may use.
const (
	linkEthernet = 1
	linkRawBSD   = 12 // raw IP on some BSDs
	linkRaw      = 101
	linkIPv4     = 228
	linkIPv6     = 229
)

// maxFrame bounds a frame's captured length: larger means a corrupt or
// hostile file, not a frame (pcap's own limit is 256 KiB).
const maxFrame = 1 << 18

// frameReader returns the next frame and its link type; io.EOF at the end.
type frameReader func() (data []byte, linkType uint32, err error)

func newFrameReader(r *bufio.Reader) (frameReader, error) {
	magic, err := r.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("read magic: %w", err)
	}
	if binary.LittleEndian.Uint32(magic) == 0x0a0d0d0a {
		return pcapngReader(r), nil
	}
	return pcapReader(r)
}

// pcapReader reads classic pcap: a 24-byte header (magic, version, zone,
// sigfigs, snaplen, link type), then per frame 16 bytes (seconds,
// sub-seconds, captured length, original length) and the frame.
func pcapReader(r *bufio.Reader) (frameReader, error) {
	var hdr [24]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("read pcap header: %w", err)
	}
	var order binary.ByteOrder
	switch binary.LittleEndian.Uint32(hdr[:4]) {
	case 0xa1b2c3d4, 0xa1b23c4d: // microsecond, nanosecond timestamps
		order = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		order = binary.BigEndian
	default:
		return nil, fmt.Errorf("not a pcap or pcapng file (magic %x)", hdr[:4])
	}
	link := order.Uint32(hdr[20:]) & 0xffff // the upper bits hold FCS flags
	return func() ([]byte, uint32, error) {
		var rec [16]byte
		if _, err := io.ReadFull(r, rec[:]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, 0, errors.New("truncated frame header")
			}
			return nil, 0, err // io.EOF: the end
		}
		n := order.Uint32(rec[8:])
		if n > maxFrame {
			return nil, 0, fmt.Errorf("frame of %d bytes (at most %d)", n, maxFrame)
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(r, data); err != nil {
			return nil, 0, fmt.Errorf("truncated frame: %w", err)
		}
		return data, link, nil
	}, nil
}

// pcapng block types read; every other block is skipped.
const (
	ngSectionHeader   = 0x0a0d0d0a
	ngInterface       = 1
	ngSimplePacket    = 3
	ngEnhancedPacket  = 6
	ngByteOrderMagic  = 0x1a2b3c4d
	ngMinBlock        = 12 // type, length, length
	ngMaxBlock        = maxFrame + 1<<16
	ngEPBFixed        = 20 // interface, timestamp (2), captured and original length
	ngSPBFixed        = 4  // original length
	ngInterfaceFixed  = 8  // link type, reserved, snap length
	ngSectionFixedMin = 16 // byte-order magic, version, section length
)

// pcapngReader reads pcapng: blocks of (type, total length, body, total
// length). A section header sets the byte order and starts the interface
// list anew; interface blocks give the link types; enhanced and simple
// packet blocks hold frames (a simple one's interface is the first).
func pcapngReader(r *bufio.Reader) frameReader {
	var order binary.ByteOrder = binary.LittleEndian
	type iface struct{ link, snap uint32 }
	var links []iface
	return func() ([]byte, uint32, error) {
		for {
			var head [8]byte
			if _, err := io.ReadFull(r, head[:]); err != nil {
				if errors.Is(err, io.ErrUnexpectedEOF) {
					return nil, 0, errors.New("truncated block header")
				}
				return nil, 0, err
			}
			typ := order.Uint32(head[:4])
			if typ == ngSectionHeader {
				// The byte order is the section's: read it before the length.
				bom, err := r.Peek(4)
				if err != nil {
					return nil, 0, fmt.Errorf("truncated section header: %w", err)
				}
				switch binary.LittleEndian.Uint32(bom) {
				case ngByteOrderMagic:
					order = binary.LittleEndian
				case 0x4d3c2b1a:
					order = binary.BigEndian
				default:
					return nil, 0, fmt.Errorf("section header with byte-order magic %x", bom)
				}
				links = links[:0]
			}
			size := order.Uint32(head[4:])
			if size < ngMinBlock || size > ngMaxBlock || size%4 != 0 {
				return nil, 0, fmt.Errorf("block of %d bytes", size)
			}
			body := make([]byte, size-8)
			if _, err := io.ReadFull(r, body); err != nil {
				return nil, 0, fmt.Errorf("truncated block: %w", err)
			}
			body = body[:len(body)-4] // the trailing copy of the length
			switch typ {
			case ngSectionHeader:
				if len(body) < ngSectionFixedMin {
					return nil, 0, errors.New("short section header")
				}
			case ngInterface:
				if len(body) < ngInterfaceFixed {
					return nil, 0, errors.New("short interface block")
				}
				links = append(links, iface{uint32(order.Uint16(body)), order.Uint32(body[4:])})
			case ngEnhancedPacket:
				if len(body) < ngEPBFixed {
					return nil, 0, errors.New("short packet block")
				}
				id, n := order.Uint32(body), order.Uint32(body[12:])
				if int(id) >= len(links) {
					return nil, 0, fmt.Errorf("packet of interface %d, %d described", id, len(links))
				}
				if uint64(n) > uint64(len(body)-ngEPBFixed) {
					return nil, 0, fmt.Errorf("packet of %d bytes in a %d-byte block", n, size)
				}
				return body[ngEPBFixed : ngEPBFixed+n], links[id].link, nil
			case ngSimplePacket:
				if len(body) < ngSPBFixed || len(links) == 0 {
					return nil, 0, errors.New("simple packet block without an interface")
				}
				// Captured: the original length cut at the snap length; the
				// rest of the body is padding.
				n := min(order.Uint32(body), uint32(len(body)-ngSPBFixed))
				if snap := links[0].snap; snap != 0 {
					n = min(n, snap)
				}
				return body[ngSPBFixed : ngSPBFixed+n], links[0].link, nil
			}
		}
	}
}
