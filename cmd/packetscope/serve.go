package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/exporter-toolkit/web"
)

// serverLimits bound what one client may hold of the HTTP server: a slow or
// idle client (a scraper that keeps connections open, a caller that never
// finishes its request) is cut off instead of holding a goroutine and a
// socket for ever.
type serverLimits struct {
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration // the whole request, body included
	WriteTimeout      time.Duration // the whole response: a /metrics scrape or a traffic report
	IdleTimeout       time.Duration // a keep-alive connection waiting for its next request
	MaxHeaderBytes    int
}

// defaultServerLimits fit the agent's and the responder's endpoints: request
// bodies are small (a rule, an Alertmanager payload), and the largest
// response, a traffic report, is written in well under a minute.
var defaultServerLimits = serverLimits{
	ReadHeaderTimeout: 10 * time.Second,
	ReadTimeout:       30 * time.Second,
	WriteTimeout:      time.Minute,
	IdleTimeout:       2 * time.Minute,
	MaxHeaderBytes:    64 << 10,
}

func newHTTPServer(handler http.Handler, l serverLimits) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
	}
}

// serve runs srv on the --web.* addresses until ctx is done, then shuts it
// down gracefully.
func serve(ctx context.Context, logger *slog.Logger, srv *http.Server, flags *web.FlagConfig) error {
	errc := make(chan error, 1)
	go func() { errc <- web.ListenAndServe(srv, flags, logger) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shut down http: %w", err)
	}
	return nil
}

// checkListen fails early, before anything is attached, when a listen
// address is taken.
func checkListen(addrs []string) error {
	for _, addr := range addrs {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return fmt.Errorf("address %s is already in use: stop what listens there or pick another --web.listen-address", addr)
			}
			return fmt.Errorf("cannot listen on %s (%v): pick another --web.listen-address", addr, err)
		}
		l.Close()
	}
	return nil
}

// loopbackURLHost turns a listen address into host:port to reach it locally.
func loopbackURLHost(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}

// registerProgramCollectors adds the program's own metrics: build info, Go
// runtime and process.
func registerProgramCollectors(reg prometheus.Registerer) {
	reg.MustRegister(
		versioncollector.NewCollector("packetscope"),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
}
