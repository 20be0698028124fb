package e2e

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/packetscope/packetscope/internal/jaegertest"
	"github.com/packetscope/packetscope/internal/testnet"
)

// The spans each side of a UDP datagram yields: the root, then its stages in
// time order. The receiver's path starts at its agent's XDP guard.
var (
	wantTXStages   = []string{"packet tx", "tx ip", "tx neigh", "tx qdisc", "tx driver"}
	wantRXStages   = []string{"packet rx", "rx xdp", "rx backlog", "rx core", "rx ip", "rx socket enqueue"}
	wantDropStages = []string{"packet rx", "rx xdp", "rx backlog", "rx core", "rx ip", "drop"} // to a closed port
)

const (
	xhAddrA    = "10.207.3.1"
	xhAddrB    = "10.207.3.2"
	xhOpenPort = 7101 // a UDP server listens here in A
	xhShutPort = 7109 // nobody listens here: NO_SOCKET
)

// TestCrossHostTraceInJaeger: two real agent processes, each scoped to its
// own namespace with --netns and exporting to one real Jaeger (A over
// OTLP/HTTP, B over OTLP/gRPC) with nothing shared but the packet itself,
// put the sender's tx path and the receiver's rx path into one trace; a
// datagram to a closed port yields a trace ending in a NO_SOCKET drop.
func TestCrossHostTraceInJaeger(t *testing.T) {
	testnet.RequireRoot(t)
	j := jaegertest.Start(t, jaegertest.Build(t))

	a := testnet.NewNS(t, "ps-xh")
	b := testnet.NewNS(t, "ps-xh")
	testnet.Link(t, a, "eth0", xhAddrA+"/24", b, "eth0", xhAddrB+"/24")

	// Every packet followed (--trace.track-every 1) and kept
	// (traceidratio 1), so any datagram the stage programs see is exported.
	agentEnv := func(service, protocol, endpoint string) []string {
		return []string{
			"OTEL_SERVICE_NAME=" + service,
			"OTEL_EXPORTER_OTLP_PROTOCOL=" + protocol,
			"OTEL_EXPORTER_OTLP_ENDPOINT=" + endpoint,
			"OTEL_EXPORTER_OTLP_INSECURE=true",
			"OTEL_BSP_SCHEDULE_DELAY=100",
			"OTEL_TRACES_SAMPLER=traceidratio",
			"OTEL_TRACES_SAMPLER_ARG=1",
		}
	}
	startAgentEnv(t, agentEnv("ps-xh-a", "http/protobuf", j.HTTPEndpoint()),
		"agent", "--netns", a.Path(), "--bpf.pin-path", pinDir(t), "--interfaces", "eth0", "--trace.track-every", "1")
	startAgentEnv(t, agentEnv("ps-xh-b", "grpc", j.GRPCEndpoint()),
		"agent", "--netns", b.Path(), "--bpf.pin-path", pinDir(t), "--interfaces", "eth0", "--trace.track-every", "1")

	var srv *net.UDPConn
	if err := a.Do(func() (err error) {
		srv, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(xhAddrA), Port: xhOpenPort})
		return err
	}); err != nil {
		t.Fatalf("listen in A: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	go func() { // drain, so no datagram is dropped for a full receive queue
		buf := make([]byte, 64)
		for {
			if _, _, err := srv.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	var open, shut *net.UDPConn
	if err := b.Do(func() (err error) {
		if open, err = net.DialUDP("udp", nil, &net.UDPAddr{IP: net.ParseIP(xhAddrA), Port: xhOpenPort}); err != nil {
			return err
		}
		shut, err = net.DialUDP("udp", nil, &net.UDPAddr{IP: net.ParseIP(xhAddrA), Port: xhShutPort})
		return err
	}); err != nil {
		t.Fatalf("dial from B: %v", err)
	}
	t.Cleanup(func() { open.Close(); shut.Close() })

	// The stage programs may be attached only for a window of each period,
	// so send continuously until the traces are there (or the deadline).
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			// A distinct payload per datagram: its first bytes are part of
			// the packet identity the trace ID is derived from.
			_, _ = open.Write(fmt.Appendf(nil, "xh-open %08d", i))
			// Writes to the closed port fail now and then with the ICMP
			// unreachable the last one earned; the next one still goes out.
			_, _ = shut.Write(fmt.Appendf(nil, "xh-shut %08d", i))
		}
	}()
	t.Cleanup(func() { close(stop); wg.Wait() })

	deadline := time.Now().Add(60 * time.Second)
	for {
		var cross, drop string
		var seen []string
		for _, tr := range j.Traces(t, "ps-xh-a") {
			rx, tx := jaegertest.Ops(tr, "ps-xh-a"), jaegertest.Ops(tr, "ps-xh-b")
			switch jaegertest.Tag(tr, "packet rx", "destination.port") {
			case fmt.Sprint(xhOpenPort):
				if jaegertest.InOrder(tr, "ps-xh-a", wantRXStages) && jaegertest.InOrder(tr, "ps-xh-b", wantTXStages) {
					cross = fmt.Sprintf("cross-host trace %s: ps-xh-b %v, ps-xh-a %v", tr.TraceID, tx, rx)
				} else if len(seen) < 10 {
					seen = append(seen, fmt.Sprintf("to %d: %s: ps-xh-b %v, ps-xh-a %v", xhOpenPort, tr.TraceID, tx, rx))
				}
			case fmt.Sprint(xhShutPort):
				status := jaegertest.Tag(tr, "packet rx", "otel.status_description")
				if jaegertest.InOrder(tr, "ps-xh-a", wantDropStages) && status == "NO_SOCKET" &&
					jaegertest.Tag(tr, "drop", "packetscope.drop_reason") == "NO_SOCKET" {
					drop = fmt.Sprintf("drop trace %s: ps-xh-b %v, ps-xh-a %v", tr.TraceID, tx, rx)
				} else if len(seen) < 10 {
					seen = append(seen, fmt.Sprintf("to %d: %s: ps-xh-b %v, ps-xh-a %v, status %q",
						xhShutPort, tr.TraceID, tx, rx, status))
				}
			}
		}
		if cross != "" && drop != "" {
			t.Log(cross)
			t.Log(drop)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60s of traffic Jaeger has no trace with ps-xh-b's %v and ps-xh-a's %v in time order (found: %t), "+
				"or no trace to the closed port with ps-xh-a's %v and a NO_SOCKET drop (found: %t); traces seen (Ops order):\n%s",
				wantTXStages, wantRXStages, cross != "", wantDropStages, drop != "", strings.Join(seen, "\n"))
		}
		time.Sleep(500 * time.Millisecond)
	}
}
