package testnet

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// recordingTB records a fatal failure instead of ending the test, so the
// helper's failure paths can be tested.
type recordingTB struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.msg = fmt.Sprintf(format, args...)
	r.mu.Unlock()
	panic(errFatal)
}

type fatal struct{}

var errFatal = fatal{}

func TestWaitForProcess(t *testing.T) {
	closed := make(chan struct{})
	close(closed)
	cases := []struct {
		name     string
		timeout  time.Duration
		exited   <-chan struct{}
		logs     func() string
		holds    int // cond holds from this try on (-1: never)
		wantFail string
	}{
		{"holds at once", time.Second, nil, nil, 0, ""},
		{"holds on the third try", 5 * time.Second, nil, nil, 2, ""},
		{"never holds", 300 * time.Millisecond, nil, func() string { return "agent log" }, -1, "timed out after 300ms waiting for the thing\nagent log"},
		{"process exited", time.Minute, closed, func() string { return "panic: boom" }, -1, "the process exited while waiting for the thing\npanic: boom"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recordingTB{TB: t}
			tries := 0
			cond := func() bool {
				defer func() { tries++ }()
				return tc.holds >= 0 && tries >= tc.holds
			}
			start := time.Now()
			func() {
				defer func() {
					if p := recover(); p != nil && p != errFatal {
						panic(p)
					}
				}()
				WaitForProcess(rec, tc.timeout, tc.exited, tc.logs, "the thing", cond)
			}()
			if rec.msg != tc.wantFail {
				t.Fatalf("failure %q, want %q", rec.msg, tc.wantFail)
			}
			if tc.wantFail == "" && tries != tc.holds+1 {
				t.Fatalf("cond tried %d times, want %d", tries, tc.holds+1)
			}
			if elapsed := time.Since(start); tc.exited != nil && elapsed > time.Second {
				t.Fatalf("took %s to notice the exited process", elapsed)
			}
		})
	}
}
