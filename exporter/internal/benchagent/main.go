// Command benchagent runs the stack exporter alone and serves /metrics, for
// scripts/bench-overhead.sh and manual checks before cmd/packetscope wires
// the exporter. It is not the product: `packetscope agent` is.
package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/packetscope/packetscope/bpf"
	"github.com/packetscope/packetscope/exporter"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() {
	netnsPath := flag.String("netns", "", "network namespace to observe (path); empty: this process's")
	listen := flag.String("web.listen-address", "127.0.0.1:9435", "where to serve /metrics")
	sample := flag.Uint("latency.sample-every", exporter.DefaultLatencySampleEvery, "timestamp one skb in N")
	window := flag.Duration("stack.stage-window", exporter.DefaultStageWindow, "how long the stage boundaries stay attached in each period")
	period := flag.Duration("stack.stage-period", exporter.DefaultStagePeriod, "how often a stage sampling window opens")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg := exporter.Config{LatencySampleEvery: uint32(*sample), StageWindow: *window, StagePeriod: *period}
	if err := run(logger, *netnsPath, cfg, *listen); err != nil {
		logger.Error("run failed", "err", err)
		os.Exit(1)
	}
}

func run(logger *slog.Logger, netnsPath string, cfg exporter.Config, listen string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bpf.Preflight(); err != nil {
		return err
	}
	ns, err := bpf.OpenNetns(netnsPath)
	if err != nil {
		return err
	}
	defer ns.Close()
	cfg.Netns = ns
	exp, err := exporter.New(logger, cfg)
	if err != nil {
		return err
	}
	defer exp.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(exp)
	srv := &http.Server{Addr: listen, Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	logger.Info("serving metrics", "address", listen)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
