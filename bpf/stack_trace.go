package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
)

// Trace points of a TraceRecord, in path order per direction: the latency
// boundaries plus the socket enqueue and the XDP guard (stack.bpf.c's enum
// boundary, TRACE_POINT_QUEUED and TRACE_POINT_XDP).
const (
	PointRXEntry       = 0
	PointRXNetifRecv   = 1
	PointRXPreRouting  = 2
	PointRXLocalIn     = 3
	PointRXDelivered   = 4
	PointTXLocalOut    = 5
	PointTXPostRouting = 6
	PointTXQueue       = 7
	PointTXStartXmit   = 8
	PointTXXmit        = 9
	PointRXQueued      = 10
	PointRXXDP         = 11 // the XDP guard started on the frame
	TracePoints        = 12

	TraceEndDone   = 1 // delivered or transmitted
	TraceEndDrop   = 2 // freed by kfree_skb with a drop reason
	TraceEndQueued = 3 // queued to a socket; read later without a tracepoint

	lostTraceRingbuf = 1
	lostTraceRate    = 2
)

// TraceConfig sets the kernel's trace sampling. All masks are "1-in-N":
// N must be a power of two.
type TraceConfig struct {
	// TrackEvery: one packet in TrackEvery (by identity hash) is followed
	// through every stage; dropped and slow ones among them are always kept.
	TrackEvery uint32
	// KeepEvery: one packet in KeepEvery (by identity hash, a multiple of
	// TrackEvery) is kept even when it is ordinary.
	KeepEvery uint32
	// SlowNs: a tracked packet whose path took at least this long is kept
	// (a received one: until LOCAL_IN, so the reader's wait does not count).
	SlowNs uint64
	// TailBudget caps the dropped or slow packets kept beyond the one in
	// KeepEvery, per CPU and second; 0 means the kernel's default (100).
	TailBudget uint32
}

func setTraceVariables(spec *ebpf.CollectionSpec, tc *TraceConfig) error {
	if tc == nil {
		return nil
	}
	if tc.TrackEvery == 0 || bits.OnesCount32(tc.TrackEvery) != 1 {
		return fmt.Errorf("trace track rate %d is not a power of two", tc.TrackEvery)
	}
	if tc.KeepEvery < tc.TrackEvery || bits.OnesCount32(tc.KeepEvery) != 1 {
		return fmt.Errorf("trace keep rate %d is not a power of two at least the track rate %d", tc.KeepEvery, tc.TrackEvery)
	}
	for name, v := range map[string]any{
		"trace_on":         uint32(1),
		"trace_track_mask": tc.TrackEvery - 1,
		"trace_keep_mask":  tc.KeepEvery - 1,
		"trace_slow_ns":    tc.SlowNs,
	} {
		if err := spec.Variables[name].Set(v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	if tc.TailBudget != 0 {
		if err := spec.Variables["trace_tail_budget"].Set(tc.TailBudget); err != nil {
			return fmt.Errorf("set trace_tail_budget: %w", err)
		}
	}
	return nil
}

// TraceRecord is one packet's path through the stack of the observed
// namespace. Times are bpf_ktime_get_ns() (CLOCK_MONOTONIC) values.
type TraceRecord struct {
	Hash       uint64 // packet identity; 0 when the headers could not be read
	Family     uint8  // 4, 6 or 0
	Protocol   uint8  // Protocol*
	Src, Dst   [16]byte
	SrcPort    uint16
	DstPort    uint16
	Ifindex    uint32
	Direction  uint8
	End        uint8
	DropReason uint32
	Points     [TracePoints]uint64 // 0 = not passed
	StartNs    uint64
	EndNs      uint64
}

// TraceReader reads finished paths from the kernel.
type TraceReader struct {
	rd *ringbuf.Reader
}

// TraceReader opens the trace ring buffer. It fails when the stack was
// loaded without tracing.
func (s *Stack) TraceReader() (*TraceReader, error) {
	rd, err := ringbuf.NewReader(s.objs.TraceEvents)
	if err != nil {
		return nil, fmt.Errorf("open trace ring buffer: %w", err)
	}
	return &TraceReader{rd: rd}, nil
}

// ErrTraceClosed is returned by Read after Close.
var ErrTraceClosed = ringbuf.ErrClosed

// tracePoll is how often Read looks for records: the kernel submits them
// without waking the reader until the buffer is half full.
const tracePoll = 100 * time.Millisecond

// readPolled blocks for the next record of rd, looking every tracePoll: the
// kernel submits without waking the reader (trace and reaction records
// alike), so a plain Read could wait for a buffer that never fills.
func readPolled(rd *ringbuf.Reader) (ringbuf.Record, error) {
	for {
		rd.SetDeadline(time.Now().Add(tracePoll))
		rec, err := rd.Read()
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return rec, err
		}
	}
}

// Read blocks for the next record.
func (r *TraceReader) Read() (TraceRecord, error) {
	rec, err := readPolled(r.rd)
	if err != nil {
		return TraceRecord{}, err
	}
	var raw stackTraceRecord
	if _, err := binary.Decode(rec.RawSample, binary.NativeEndian, &raw); err != nil {
		return TraceRecord{}, fmt.Errorf("decode trace record: %w", err)
	}
	return TraceRecord{
		Hash: raw.Flow.Hash, Family: raw.Flow.Family, Protocol: raw.Flow.Protocol,
		Src: raw.Flow.Saddr, Dst: raw.Flow.Daddr, SrcPort: raw.Flow.Sport, DstPort: raw.Flow.Dport,
		Ifindex: raw.Ifindex, Direction: raw.Direction, End: raw.End, DropReason: raw.DropReason,
		Points: raw.Ts, StartNs: raw.StartTs, EndNs: raw.EndTs,
	}, nil
}

// Close unblocks Read.
func (r *TraceReader) Close() error {
	if err := r.rd.Close(); err != nil && !errors.Is(err, ringbuf.ErrClosed) {
		return fmt.Errorf("close trace ring buffer: %w", err)
	}
	return nil
}

// LostTraces reads how many trace records found the ring buffer full
// (ringbuf) and how many dropped or slow packets were over the budget
// (rate).
func (s *Stack) LostTraces() (ringbuf, rate uint64, err error) {
	if ringbuf, err = sumU64(s.objs.LostEvents, lostTraceRingbuf); err != nil {
		return 0, 0, fmt.Errorf("read lost_events: %w", err)
	}
	if rate, err = sumU64(s.objs.LostEvents, lostTraceRate); err != nil {
		return 0, 0, fmt.Errorf("read lost_events: %w", err)
	}
	return ringbuf, rate, nil
}
