package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/packetscope/packetscope/agentapi"
	"github.com/packetscope/packetscope/bpf"
	"github.com/packetscope/packetscope/exporter"
	"github.com/packetscope/packetscope/guard"
	"github.com/packetscope/packetscope/rule"
)

const defaultAgentListenAddress = ":9436"

type agentConfig struct {
	web                *web.FlagConfig
	interfaces         string
	apiTokenFile       string
	pinPath            string
	netns              string
	latencySampleEvery uint32
	stageWindow        time.Duration
	stagePeriod        time.Duration
	traceSlow          time.Duration
	traceTrackEvery    uint32
	guardSampleEvery   uint32
	trafficWindow      time.Duration
	trafficMaxSamples  int
	maxRules           int
	neverBlock         []string
}

func (c *agentConfig) addFlags(cmd *kingpin.CmdClause) {
	c.web = kingpinflag.AddFlags(cmd, defaultAgentListenAddress)
	cmd.Flag("interfaces", "Comma-separated interfaces for the XDP guard; default: every up, non-loopback interface.").StringVar(&c.interfaces)
	cmd.Flag("api.token-file", "File holding the bearer token every mutating agent API call must send.").StringVar(&c.apiTokenFile)
	cmd.Flag("bpf.pin-path", "bpffs directory where rules and the XDP link are pinned; they survive a restart.").Default(guard.DefaultPinPath).StringVar(&c.pinPath)
	cmd.Flag("netns", "Network namespace to observe, as a path (e.g. /var/run/netns/NAME); default: the agent's own.").StringVar(&c.netns)
	cmd.Flag("stack.latency-sample-every", "Time 1 in N packets through the stack stages.").Default(strconv.Itoa(exporter.DefaultLatencySampleEvery)).Uint32Var(&c.latencySampleEvery)
	cmd.Flag("stack.stage-window", "How long the stage boundaries stay attached in each --stack.stage-period: every attached boundary costs every packet a program dispatch, so stages are sampled in windows (the traffic, drop and TCP counters never stop).").Default(durationDefault(exporter.DefaultStageWindow)).DurationVar(&c.stageWindow)
	cmd.Flag("stack.stage-period", "How often a stage sampling window opens, on the wall clock (agents on several hosts follow the same packets). A window as long as the period keeps the boundaries attached.").Default(durationDefault(exporter.DefaultStagePeriod)).DurationVar(&c.stagePeriod)
	cmd.Flag("trace.slow-threshold", "Packet-path tracing (on when OTEL_* configures a trace exporter): always trace a followed packet slower than this.").Default(durationDefault(exporter.DefaultTraceSlow)).DurationVar(&c.traceSlow)
	cmd.Flag("trace.track-every", "Packet-path tracing: follow 1 in N packets (a power of two, by packet identity) through every stage; 1 in OTEL_TRACES_SAMPLER_ARG's inverse (default 4096) is kept when ordinary.").Default(strconv.Itoa(exporter.DefaultTraceTrackEvery)).Uint32Var(&c.traceTrackEvery)
	cmd.Flag("guard.sample-every", "Keep the header of 1 in N packets the XDP guard sees in the traffic window.").Default(strconv.Itoa(guard.DefaultSampleEvery)).Uint32Var(&c.guardSampleEvery)
	cmd.Flag("guard.traffic-window", "How long sampled headers are kept for /api/v1/traffic.").Default(durationDefault(agentapi.DefaultWindowMaxAge)).DurationVar(&c.trafficWindow)
	cmd.Flag("guard.traffic-max-samples", "Most sampled headers kept in memory, whatever their age.").Default(strconv.Itoa(agentapi.DefaultWindowMaxSamples)).IntVar(&c.trafficMaxSamples)
	cmd.Flag("guard.max-rules", "Most rules the guard holds at once.").Default(strconv.Itoa(guard.DefaultMaxRules)).IntVar(&c.maxRules)
	cmd.Flag("guard.never-block", "CIDR (or address) no drop or rate_limit rule may cover, on top of the node's own addresses, gateways, loopback and link-local: the agent refuses such rules whoever sends them. Repeatable.").StringsVar(&c.neverBlock)
}

// extraRoutes lets `packetscope run` serve the responder beside the agent.
type extraRoutes func(mux *http.ServeMux)

// runAgent runs the agent; reg may already hold collectors (the responder's in `run`).
func runAgent(ctx context.Context, logger *slog.Logger, cfg agentConfig, reg *prometheus.Registry, extra extraRoutes) error {
	if err := bpf.Preflight(); err != nil {
		return err
	}
	// The namespace is opened once; everything that acts inside it gets it.
	ns, err := bpf.OpenNetns(cfg.netns)
	if err != nil {
		return err
	}
	defer ns.Close()
	var ifaces []string
	if err := ns.Do(func() (err error) {
		ifaces, err = guardInterfaces(cfg.interfaces)
		return err
	}); err != nil {
		return err
	}
	if err := checkListen(*cfg.web.WebListenAddresses); err != nil {
		return err
	}
	token, err := readSecretFile(cfg.apiTokenFile, "--api.token-file")
	if err != nil {
		return err
	}
	if token == "" {
		logger.Warn("no --api.token-file: the agent API is read-only until a token is configured")
	}
	neverBlock, err := agentapi.ParseNeverBlock(cfg.neverBlock)
	if err != nil {
		return err
	}

	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	registerProgramCollectors(reg)

	g, err := guard.Open(logger, guard.Config{
		Netns:       ns,
		Interfaces:  ifaces,
		PinPath:     cfg.pinPath,
		MaxRules:    cfg.maxRules,
		SampleEvery: cfg.guardSampleEvery,
	})
	if err != nil {
		return err
	}
	defer g.Close()
	reg.MustRegister(g.Collector())

	// The guard first: the stack's traces start where the guard passed a frame.
	exp, err := exporter.New(logger, exporter.Config{Netns: ns, LatencySampleEvery: cfg.latencySampleEvery,
		StageWindow: cfg.stageWindow, StagePeriod: cfg.stagePeriod, TraceSlow: cfg.traceSlow,
		TraceTrackEvery: cfg.traceTrackEvery, XDPPass: g.XDPPass(), XDPTrace: g.TraceXDP})
	if err != nil {
		return err
	}
	defer exp.Close()
	reg.MustRegister(exp)

	slow := agentapi.NewSlowConnTracker(logger, ns.ForNetlink(), agentapi.SlowConnConfig{})
	reg.MustRegister(slow.Collector())
	go slow.Run(ctx.Done())
	window := agentapi.NewTrafficWindow(agentapi.WindowConfig{
		MaxAge:          cfg.trafficWindow,
		MaxSamples:      cfg.trafficMaxSamples,
		SampleEvery:     g.SampleEvery(),
		Protected:       agentapi.ProtectedAddresses(logger, ns.ForNetlink(), 30*time.Second, neverBlock...),
		SlowConnections: slow.Report,
		UDPPeers:        loggedUDPPeers(logger, agentapi.UDPPeersOf(ns.ForNetlink())),
	})
	reg.MustRegister(window.Collector())
	go feedWindow(ctx, g, window)
	go func() {
		if err := exp.Reactions(ctx, func(r exporter.Reaction) { window.AddReaction(reactionSample(r)) }); err != nil {
			logger.Warn("read the stack's reactions", "err", err)
		}
	}()

	var ready atomic.Bool
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, EnableOpenMetrics: true}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready: programs attached")
	})
	mux.Handle("/api/v1/", agentapi.NewAPI(logger, g.Rules(), window, token, agentapi.OnRuleAdded(slow.CloseHeldBy)))
	if extra != nil {
		extra(mux)
	}
	ready.Store(true)
	logger.Info("agent ready", "listen", strings.Join(*cfg.web.WebListenAddresses, ","), "interfaces", strings.Join(ifaces, ","), "pin_path", cfg.pinPath)
	return serve(ctx, logger, newHTTPServer(mux, defaultServerLimits), cfg.web)
}

func feedWindow(ctx context.Context, g *guard.Guard, w *agentapi.TrafficWindow) {
	samples := g.Samples()
	for {
		select {
		case <-ctx.Done():
			return
		case s, ok := <-samples:
			if !ok {
				return
			}
			w.Add(s)
		}
	}
}

// reactionSample is a stack reaction as the traffic window keeps it.
func reactionSample(r exporter.Reaction) rule.Sample {
	return rule.Sample{Time: r.Time, Interface: r.Interface, Reaction: r.ReasonName, Packet: rule.Packet{
		Family: r.Family, Src: r.Src, Dst: r.Dst, Protocol: r.Protocol, TTL: r.TTL, Length: r.Length,
		Fragment: rule.FragNone, HasL4: true, SrcPort: r.SrcPort, DstPort: r.DstPort,
		TCPFlags: r.TCPFlags, TCPWindow: r.Window,
	}}
}

// guardInterfaces resolves --interfaces, or every up, non-loopback interface.
func guardInterfaces(flag string) ([]string, error) {
	all, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list network interfaces: %w", err)
	}
	if flag == "" {
		var names []string
		for _, ifc := range all {
			if ifc.Flags&net.FlagUp != 0 && ifc.Flags&net.FlagLoopback == 0 {
				names = append(names, ifc.Name)
			}
		}
		if len(names) == 0 {
			return nil, errors.New("no up, non-loopback interface to guard: bring one up or name one with --interfaces")
		}
		return names, nil
	}
	var names []string
	for _, name := range strings.Split(flag, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if _, err := net.InterfaceByName(name); err != nil {
			return nil, fmt.Errorf("interface %q does not exist: check --interfaces against `ip link`", name)
		}
		names = append(names, name)
	}
	if len(names) == 0 {
		return nil, errors.New("--interfaces names no interface")
	}
	return names, nil
}

func runCleanup(logger *slog.Logger, pinPath string) error {
	if err := bpf.EnsureFilesystems(); err != nil {
		return err
	}
	if err := guard.Remove(pinPath); err != nil {
		return err
	}
	logger.Info("removed the pinned XDP guard", "pin_path", pinPath)
	return nil
}

// loggedUDPPeers logs a failed listing: a report then goes out without the
// peers, and the responder counts their answers as unknown traffic.
func loggedUDPPeers(logger *slog.Logger, list func() ([]agentapi.UDPPeer, error)) func() ([]agentapi.UDPPeer, error) {
	return func() ([]agentapi.UDPPeer, error) {
		peers, err := list()
		if err != nil {
			logger.Warn("list the connected UDP sockets' peers", "err", err)
		}
		return peers, err
	}
}
