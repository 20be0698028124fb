package guard

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/packetscope/packetscope/bpf"
	"github.com/packetscope/packetscope/rule"
)

// sampler reads sampled headers from the kernel's ring buffer and hands them
// out on a bounded channel; what the consumer does not take in time is
// dropped and counted, so memory stays bounded under any flood.
type sampler struct {
	logger   *slog.Logger
	rd       *ringbuf.Reader
	ifaces   map[uint32]string
	out      chan rule.Sample
	bootWall time.Time // wall-clock time of CLOCK_MONOTONIC zero (the kernel's sample clock)
	taken    atomic.Uint64
	dropped  atomic.Uint64
	lastSlot atomic.Uint32 // matching rule slot of the newest sample (tests)
}

func newSampler(logger *slog.Logger, m *ebpf.Map, ifaces map[uint32]string, buffer int) (*sampler, error) {
	rd, err := ringbuf.NewReader(m)
	if err != nil {
		return nil, fmt.Errorf("open sample ring buffer: %w", err)
	}
	return &sampler{logger: logger, rd: rd, ifaces: ifaces, out: make(chan rule.Sample, buffer), bootWall: bootEpoch()}, nil
}

// bootEpoch returns the wall-clock time at which CLOCK_MONOTONIC was zero.
func bootEpoch() time.Time {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Now().Add(-time.Duration(ts.Nano()))
}

func (s *sampler) run() {
	defer close(s.out)
	var rec ringbuf.Record
	for {
		if err := s.rd.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) {
				return
			}
			s.logger.Warn("read sample ring buffer", "err", err)
			continue
		}
		smp, ok := s.decode(rec.RawSample)
		if !ok {
			continue
		}
		s.taken.Add(1)
		select {
		case s.out <- smp:
		default:
			s.dropped.Add(1)
		}
	}
}

func (s *sampler) close() { _ = s.rd.Close() }

func (s *sampler) decode(raw []byte) (rule.Sample, bool) {
	var k bpf.GuardSample
	if len(raw) < int(unsafe.Sizeof(k)) {
		return rule.Sample{}, false
	}
	if _, err := binary.Decode(raw, binary.NativeEndian, &k); err != nil {
		return rule.Sample{}, false
	}
	s.lastSlot.Store(k.Slot)
	name, ok := s.ifaces[k.Ifindex]
	if !ok {
		name = "ifindex_" + strconv.Itoa(int(k.Ifindex))
	}
	return rule.Sample{
		Time:      s.bootWall.Add(time.Duration(k.TimeNs)),
		Interface: name,
		Packet:    packetFromSample(&k),
	}, true
}

// packetFromSample rebuilds the Packet the kernel parsed.
func packetFromSample(k *bpf.GuardSample) rule.Packet {
	p := rule.Packet{
		Family: k.Family, Protocol: k.Protocol, TTL: k.Ttl, Length: k.Length,
		Fragment: rule.FragKind(k.Fragment), HasL4: k.HasL4 != 0, SrcPort: k.Sport, DstPort: k.Dport,
		TCPFlags: k.TcpFlags, TCPWindow: k.Window, ICMPType: k.IcmpType,
	}
	switch k.Family {
	case 4:
		p.Src = netip.AddrFrom4([4]byte(k.Src[:4]))
		p.Dst = netip.AddrFrom4([4]byte(k.Dst[:4]))
	case 6:
		p.Src = netip.AddrFrom16(k.Src)
		p.Dst = netip.AddrFrom16(k.Dst)
	}
	return p
}
