// Package jaegere2e checks packet-path traces end to end through a real
// Jaeger (v1.76.0, built from the pinned tools module tools/jaeger): two
// exporters, each scoped to its own namespace, one exporting over OTLP/HTTP
// and one over OTLP/gRPC, configured only by OTEL_* environment variables.
package jaegere2e

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/packetscope/packetscope/bpf"
	"github.com/packetscope/packetscope/exporter"
	"github.com/packetscope/packetscope/internal/jaegertest"
	"github.com/packetscope/packetscope/internal/testnet"
)

const (
	addrA = "10.206.2.1"
	addrB = "10.206.2.2"
)

func newExporter(t *testing.T, ns *testnet.NS, service, protocol, endpoint string) {
	t.Helper()
	t.Setenv("OTEL_SERVICE_NAME", service)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	exp, err := exporter.New(nil, exporter.Config{Netns: mustOpenNetns(t, ns.Path()), TraceTrackEvery: 1, TraceKeepEvery: 1,
		StageWindow: time.Second, StagePeriod: time.Second})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = exp.Close() })
}

func TestJaeger(t *testing.T) {
	testnet.RequireRoot(t)
	if err := bpf.EnsureFilesystems(); err != nil {
		t.Fatal(err)
	}
	j := jaegertest.Start(t, jaegertest.Build(t))

	a := testnet.NewNS(t, "ps-trc")
	b := testnet.NewNS(t, "ps-trc")
	testnet.Link(t, a, "eth0", addrA+"/24", b, "eth0", addrB+"/24")
	newExporter(t, a, "ps-trc-a", "http/protobuf", j.HTTPEndpoint())
	newExporter(t, b, "ps-trc-b", "grpc", j.GRPCEndpoint())

	var srv *net.UDPConn
	if err := a.Do(func() (err error) {
		srv, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(addrA), Port: 7001})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	var c, closed net.Conn
	if err := b.Do(func() (err error) {
		if c, err = net.Dial("udp", addrA+":7001"); err != nil {
			return err
		}
		closed, err = net.Dial("udp", addrA+":7009")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); closed.Close() })
	buf := make([]byte, 64)
	for range 3 {
		if _, err := c.Write([]byte("to jaeger")); err != nil {
			t.Fatal(err)
		}
		_ = srv.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, _, err := srv.ReadFrom(buf); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := closed.Write([]byte("nobody")); err != nil {
		t.Fatal(err)
	}

	var why string
	deadline := time.Now().Add(20 * time.Second)
	for {
		okCross, okDrop := false, false
		why = ""
		var found []string
		for _, tr := range j.Traces(t, "ps-trc-a") {
			rx, tx := jaegertest.Ops(tr, "ps-trc-a"), jaegertest.Ops(tr, "ps-trc-b")
			if jaegertest.Tag(tr, "packet rx", "destination.port") == "7001" && len(tx) > 0 {
				wantRX := []string{"packet rx", "rx backlog", "rx core", "rx ip", "rx socket enqueue"}
				wantTX := []string{"packet tx", "tx ip", "tx neigh", "tx qdisc", "tx driver"}
				// Jaeger keeps microseconds: stages shorter than that may
				// tie, so the order allows ties (jaegertest.InOrder).
				if jaegertest.InOrder(tr, "ps-trc-a", wantRX) && jaegertest.InOrder(tr, "ps-trc-b", wantTX) {
					okCross = true
					found = append(found, fmt.Sprintf("cross-host trace %s: a %v, b %v", tr.TraceID, rx, tx))
				} else {
					why += fmt.Sprintf("cross-host trace %s: a %v, b %v; ", tr.TraceID, rx, tx)
				}
			}
			if jaegertest.Tag(tr, "packet rx", "destination.port") == "7009" {
				if rx[len(rx)-1] == "drop" && jaegertest.Tag(tr, "packet rx", "otel.status_description") == "NO_SOCKET" &&
					jaegertest.Tag(tr, "drop", "packetscope.drop_reason") == "NO_SOCKET" {
					okDrop = true
					found = append(found, fmt.Sprintf("drop trace %s: %v", tr.TraceID, rx))
				} else {
					why += fmt.Sprintf("drop trace %s: %v, status %q; ", tr.TraceID, rx, jaegertest.Tag(tr, "packet rx", "otel.status_description"))
				}
			}
		}
		if okCross && okDrop {
			for _, f := range found {
				t.Log(f)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("jaeger has no cross-host UDP trace (a's rx and b's tx) and drop trace ending NO_SOCKET: cross %v, drop %v; %s",
				okCross, okDrop, why)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func mustOpenNetns(tb testing.TB, path string) *bpf.Netns {
	tb.Helper()
	ns, err := bpf.OpenNetns(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ns.Close() })
	return ns
}
