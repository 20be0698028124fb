package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/exporter-toolkit/web"

	"github.com/packetscope/packetscope/internal/testnet"
)

// startTestServer serves h through serve (the agent's and responder's path)
// on a loopback port with the given limits and returns its address.
func startTestServer(t *testing.T, h http.Handler, limits serverLimits) string {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testnet.FreePort(t))
	systemd, configFile := false, ""
	flags := &web.FlagConfig{WebListenAddresses: &[]string{addr}, WebSystemdSocket: &systemd, WebConfigFile: &configFile}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), newHTTPServer(h, limits), flags)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("server on %s never accepted: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestServerClosesIdleConnection: a keep-alive connection that sends no
// further request is closed by the server once IdleTimeout passes, so idle
// clients cannot pile up sockets.
func TestServerClosesIdleConnection(t *testing.T) {
	limits := defaultServerLimits
	limits.IdleTimeout = 300 * time.Millisecond
	addr := startTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") }), limits)

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// One request on a keep-alive connection, then silence.
	if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("status %d, close %v: want 200 on a connection kept alive", resp.StatusCode, resp.Close)
	}
	idleFrom := time.Now()

	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := br.Read(make([]byte, 1))
	idle := time.Since(idleFrom)
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("read on the idle connection: %d bytes, err %v; want EOF (closed by the server)", n, err)
	}
	if idle < limits.IdleTimeout/2 {
		t.Fatalf("connection closed after %s, before the idle timeout %s", idle, limits.IdleTimeout)
	}
	t.Logf("idle connection closed after %s (IdleTimeout %s)", idle.Round(time.Millisecond), limits.IdleTimeout)
}

// TestServerLimits: requests beyond the limits are refused; the default
// limits set every timeout, not only the header's.
func TestServerLimits(t *testing.T) {
	for name, d := range map[string]time.Duration{
		"ReadHeaderTimeout": defaultServerLimits.ReadHeaderTimeout,
		"ReadTimeout":       defaultServerLimits.ReadTimeout,
		"WriteTimeout":      defaultServerLimits.WriteTimeout,
		"IdleTimeout":       defaultServerLimits.IdleTimeout,
	} {
		if d <= 0 {
			t.Errorf("default %s is %s: an unset timeout lets a client hold a connection for ever", name, d)
		}
	}
	if defaultServerLimits.MaxHeaderBytes <= 0 {
		t.Errorf("default MaxHeaderBytes is %d", defaultServerLimits.MaxHeaderBytes)
	}

	limits := defaultServerLimits
	limits.MaxHeaderBytes = 4 << 10
	limits.ReadTimeout = 300 * time.Millisecond
	addr := startTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestTimeout)
			return
		}
		fmt.Fprintln(w, "ok")
	}), limits)

	cases := []struct {
		name    string
		request string
		pause   time.Duration // before the rest of the body
		want    string        // status line prefix, or "" for a closed connection
	}{
		{"ordinary", "GET / HTTP/1.1\r\nHost: test\r\n\r\n", 0, "HTTP/1.1 200"},
		{"header over MaxHeaderBytes", "GET / HTTP/1.1\r\nHost: test\r\nX-Big: " + strings.Repeat("a", 8<<10) + "\r\n\r\n", 0, "HTTP/1.1 431"},
		{"body slower than ReadTimeout", "POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\n\r\nab", time.Second, "HTTP/1.1 408"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, tc.request); err != nil {
				t.Fatal(err)
			}
			if tc.pause > 0 {
				time.Sleep(tc.pause)
				_, _ = io.WriteString(conn, "cd")
			}
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, err := bufio.NewReader(conn).ReadString('\n')
			if !strings.HasPrefix(line, tc.want) {
				t.Fatalf("status line %q (err %v), want %q", line, err, tc.want)
			}
		})
	}
}
