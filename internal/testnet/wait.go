package testnet

import (
	"testing"
	"time"
)

// waitPoll is how often WaitFor tries its condition: often enough that a
// test waits little past the moment it holds, seldom enough not to load a
// shared machine.
const waitPoll = 250 * time.Millisecond

// WaitFor polls cond until it holds and fails the test when timeout passes
// first, naming what it waited for.
func WaitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	WaitForProcess(tb, timeout, nil, nil, what, cond)
}

// WaitForProcess is WaitFor on a condition a process under test must bring
// about: it fails at once when exited is closed (the process died), and
// either failure prints logs() (the process's output) when logs is not nil.
func WaitForProcess(tb testing.TB, timeout time.Duration, exited <-chan struct{}, logs func() string, what string, cond func() bool) {
	tb.Helper()
	output := func() string {
		if logs == nil {
			return ""
		}
		return "\n" + logs()
	}
	deadline := time.Now().Add(timeout)
	for !cond() {
		select {
		case <-exited: // a nil channel never fires
			tb.Fatalf("the process exited while waiting for %s%s", what, output())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s%s", timeout, what, output())
		}
		time.Sleep(waitPoll)
	}
}
