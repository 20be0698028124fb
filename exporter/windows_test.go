package exporter

import (
	"testing"
	"time"

	"github.com/packetscope/packetscope/bpf"
	"github.com/packetscope/packetscope/internal/testnet"
)

// TestStageWindows: with windows of 300 ms every second, the stage
// boundaries come and go on the wall clock, stages are observed inside a
// window and never between two, while the traffic counters never stop.
func TestStageWindows(t *testing.T) {
	requireKernel(t)
	a := testnet.NewNS(t, "ps-exp")
	b := testnet.NewNS(t, "ps-exp")
	testnet.Link(t, a, "eth0", addrA+"/24", b, "eth0", addrB+"/24")
	exp, err := New(nil, Config{Netns: openTestNetns(t, a.Path()), LatencySampleEvery: 1, StageWindow: 300 * time.Millisecond,
		StagePeriod: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exp.Close() })
	srv := listenUDP(t, a, addrA+":5031")
	c := mustDial(t, b, "udp", addrA+":5031")

	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // a datagram every 2 ms, read by a
		defer close(done)
		buf := make([]byte, 64)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, _ = c.Write([]byte("window"))
			_ = srv.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			_, _, _ = srv.ReadFrom(buf)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	defer func() { close(stop); <-done }()

	type snap struct {
		at       time.Time
		open     bool
		samples  uint64 // rx core stage observations
		received uint64 // rx packets counted on eth0
	}
	take := func() snap {
		exp.mu.Lock()
		defer exp.mu.Unlock()
		s := snap{at: time.Now(), open: exp.stack.PathAttached()}
		lat, err := exp.stack.Latency()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range lat[bpf.StageRXCore].Buckets {
			s.samples += c
		}
		traffic, err := exp.stack.Traffic()
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range traffic {
			if tc.Direction == bpf.DirectionRX {
				s.received += tc.Packets
			}
		}
		return s
	}
	var snaps []snap
	for end := time.Now().Add(3500 * time.Millisecond); time.Now().Before(end); time.Sleep(25 * time.Millisecond) {
		snaps = append(snaps, take())
	}

	var opened, closed, grewOpen, grewClosed, countedClosed int
	for i := 1; i < len(snaps); i++ {
		p, s := snaps[i-1], snaps[i]
		if s.open {
			opened++
		} else {
			closed++
		}
		if s.open && p.open && s.samples > p.samples {
			grewOpen++
		}
		// Two snapshots inside one closed stretch: no stage observed.
		if !s.open && !p.open {
			if s.samples != p.samples {
				grewClosed++
				t.Errorf("stage observations grew from %d to %d between %v and %v with the window closed",
					p.samples, s.samples, p.at.Format("15:04:05.000"), s.at.Format("15:04:05.000"))
			}
			if s.received > p.received {
				countedClosed++
			}
		}
	}
	t.Logf("%d snapshots: %d open, %d closed; stages grew in %d open intervals, packets counted in %d closed ones",
		len(snaps), opened, closed, grewOpen, countedClosed)
	if opened == 0 || closed == 0 {
		t.Fatalf("the window never opened or never closed (%d open, %d closed snapshots)", opened, closed)
	}
	if grewOpen == 0 {
		t.Error("no stage observed inside a window")
	}
	if countedClosed == 0 {
		t.Error("traffic not counted while the window was closed")
	}
	// Windows open on whole seconds of the wall clock.
	for i := 1; i < len(snaps); i++ {
		if snaps[i].open && !snaps[i-1].open {
			if ms := snaps[i].at.Nanosecond() / 1e6; ms > 300 {
				t.Errorf("a window opened at %s, %d ms into its second; windows open at the start of each period",
					snaps[i].at.Format("15:04:05.000"), ms)
			}
		}
	}
}
