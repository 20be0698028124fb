package responder

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

type frame struct {
	data []byte
	link uint32
}

func readFrames(tb testing.TB, file []byte) ([]frame, error) {
	tb.Helper()
	next, err := newFrameReader(bufio.NewReader(bytes.NewReader(file)))
	if err != nil {
		return nil, err
	}
	var out []frame
	for {
		d, link, err := next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, frame{append([]byte(nil), d...), link})
	}
}

// gopacketFrames reads a file with gopacket's readers, the reference.
func gopacketFrames(tb testing.TB, file []byte) []frame {
	tb.Helper()
	var out []frame
	if binary.LittleEndian.Uint32(file) == ngSectionHeader {
		r, err := pcapgo.NewNgReader(bytes.NewReader(file), pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			tb.Fatal(err)
		}
		for {
			d, ci, err := r.ReadPacketData()
			if err != nil {
				return out
			}
			intf, err := r.Interface(ci.InterfaceIndex)
			if err != nil {
				tb.Fatal(err)
			}
			out = append(out, frame{d, uint32(intf.LinkType)})
		}
	}
	r, err := pcapgo.NewReader(bytes.NewReader(file))
	if err != nil {
		tb.Fatal(err)
	}
	for {
		d, _, err := r.ReadPacketData()
		if err != nil {
			return out
		}
		out = append(out, frame{d, uint32(r.LinkType())})
	}
}

// testFrames are frames of a few lengths, the odd ones to exercise pcapng's
// padding.
func testFrames() [][]byte {
	var out [][]byte
	for _, n := range []int{60, 61, 62, 63, 64, 1514} {
		f := make([]byte, n)
		for i := range f {
			f[i] = byte(i*7 + n)
		}
		out = append(out, f)
	}
	return out
}

func pcapFile(tb testing.TB, nanos bool, link layers.LinkType) []byte {
	tb.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if nanos {
		w = pcapgo.NewWriterNanos(&buf)
	}
	if err := w.WriteFileHeader(65535, link); err != nil {
		tb.Fatal(err)
	}
	for i, f := range testFrames() {
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(int64(i), 0), CaptureLength: len(f), Length: len(f)}, f); err != nil {
			tb.Fatal(err)
		}
	}
	return buf.Bytes()
}

// bigEndianPcap rewrites a little-endian pcap file as a big-endian one.
func bigEndianPcap(le []byte) []byte {
	be := append([]byte(nil), le...)
	swap := func(off int) { binary.BigEndian.PutUint32(be[off:], binary.LittleEndian.Uint32(le[off:])) }
	swap16 := func(off int) { binary.BigEndian.PutUint16(be[off:], binary.LittleEndian.Uint16(le[off:])) }
	swap(0)
	swap16(4)
	swap16(6)
	for _, off := range []int{8, 12, 16, 20} {
		swap(off)
	}
	for off := 24; off < len(le); {
		for i := range 4 {
			swap(off + 4*i)
		}
		off += 16 + int(binary.LittleEndian.Uint32(le[off+8:]))
	}
	return be
}

// pcapngFile has an Ethernet and a raw-IP interface and frames on both.
func pcapngFile(tb testing.TB) []byte {
	tb.Helper()
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriter(&buf, layers.LinkTypeEthernet)
	if err != nil {
		tb.Fatal(err)
	}
	raw, err := w.AddInterface(pcapgo.NgInterface{LinkType: layers.LinkTypeRaw, SnapLength: 65535})
	if err != nil {
		tb.Fatal(err)
	}
	for i, f := range testFrames() {
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(int64(i), 0), CaptureLength: len(f), Length: len(f), InterfaceIndex: (i % 2) * raw}
		if err := w.WritePacket(ci, f); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// TestFrameReaderAgreesWithGopacket: the frames and link types read are
// gopacket's, for the real captures in testdata and for written pcap
// (micro- and nanosecond, either byte order) and pcapng files.
func TestFrameReaderAgreesWithGopacket(t *testing.T) {
	files := map[string][]byte{
		"pcap":            pcapFile(t, false, layers.LinkTypeEthernet),
		"pcap nanosecond": pcapFile(t, true, layers.LinkTypeRaw),
		"pcap big-endian": bigEndianPcap(pcapFile(t, false, layers.LinkTypeEthernet)),
		"pcapng":          pcapngFile(t),
	}
	for _, name := range []string{"pkt.TCP.synflood.spoofed.pcap", "amp.UDP.snmp.src161.pcapng", "ordinary.pcap"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = b
	}
	for name, file := range files {
		got, err := readFrames(t, file)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		want := gopacketFrames(t, file)
		if len(want) == 0 {
			t.Fatalf("%s: gopacket read no frames", name)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %d frames differ from gopacket's %d", name, len(got), len(want))
		}
	}
}

// ngBlock is one pcapng block, body padded to 32 bits.
func ngBlock(order binary.AppendByteOrder, typ uint32, body []byte) []byte {
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	b := order.AppendUint32(nil, typ)
	b = order.AppendUint32(b, uint32(12+len(body)))
	b = append(b, body...)
	return order.AppendUint32(b, uint32(12+len(body)))
}

// TestPcapngByHand: a big-endian section with an unknown block, a simple
// packet block cut at its interface's snap length, then a little-endian
// section whose interface list starts anew.
func TestPcapngByHand(t *testing.T) {
	be, le := binary.BigEndian, binary.LittleEndian
	shb := func(o binary.AppendByteOrder) []byte {
		b := o.AppendUint32(nil, ngByteOrderMagic)
		b = o.AppendUint16(b, 1)
		b = o.AppendUint16(b, 0)
		return ngBlock(o, ngSectionHeader, o.AppendUint64(b, ^uint64(0)))
	}
	idb := func(o binary.AppendByteOrder, link uint16, snap uint32) []byte {
		b := o.AppendUint16(nil, link)
		b = o.AppendUint16(b, 0)
		return ngBlock(o, ngInterface, o.AppendUint32(b, snap))
	}
	frameA := bytes.Repeat([]byte{0xaa}, 70)
	frameB := bytes.Repeat([]byte{0xbb}, 61)
	var file []byte
	file = append(file, shb(be)...)
	file = append(file, idb(be, linkRaw, 64)...)
	file = append(file, ngBlock(be, 0x0bad, []byte{1, 2, 3})...)                                     // unknown: skipped
	file = append(file, ngBlock(be, ngSimplePacket, append(be.AppendUint32(nil, 70), frameA...))...) // cut at 64
	file = append(file, shb(le)...)
	file = append(file, idb(le, linkEthernet, 0)...)
	epb := le.AppendUint32(nil, 0)
	epb = le.AppendUint64(epb, 0)
	epb = le.AppendUint32(epb, 61)
	epb = le.AppendUint32(epb, 61)
	file = append(file, ngBlock(le, ngEnhancedPacket, append(epb, frameB...))...)
	got, err := readFrames(t, file)
	if err != nil {
		t.Fatal(err)
	}
	want := []frame{{frameA[:64], linkRaw}, {frameB, linkEthernet}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("frames %v, want %v", got, want)
	}
}

// TestFrameReaderRejectsBadFiles: hostile lengths and cut files end in an
// error, never a panic or a huge allocation.
func TestFrameReaderRejectsBadFiles(t *testing.T) {
	pcap := pcapFile(t, false, layers.LinkTypeEthernet)
	huge := append([]byte(nil), pcap...)
	binary.LittleEndian.PutUint32(huge[24+8:], 1<<30) // first frame's captured length
	ng := pcapngFile(t)
	badBlock := append([]byte(nil), ng...)
	binary.LittleEndian.PutUint32(badBlock[4:], 6) // section header of 6 bytes
	for name, file := range map[string][]byte{
		"empty": {}, "not a capture": []byte("hello, world, not a capture"),
		"huge frame": huge, "pcap cut in a frame": pcap[:24+16+10], "pcap cut in a header": pcap[:24+8],
		"block of 6 bytes": badBlock, "pcapng cut": ng[:len(ng)-7],
	} {
		if _, err := readFrames(t, file); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// FuzzFrameReader: any input ends in frames or an error, never a panic.
func FuzzFrameReader(f *testing.F) {
	f.Add(pcapFile(f, false, layers.LinkTypeEthernet))
	f.Add(pcapngFile(f))
	f.Fuzz(func(t *testing.T, file []byte) {
		_, _ = readFrames(t, file)
	})
}
