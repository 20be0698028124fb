package exporter

import (
	"context"
	"time"
)

// Defaults of the stage sampling windows: the stage boundaries are attached
// for DefaultStageWindow at the start of every DefaultStagePeriod.
const (
	DefaultStageWindow = time.Second
	DefaultStagePeriod = 20 * time.Second
)

// runStageWindows keeps the stage boundaries New attached for one window,
// then attaches them for window at the start of every period until ctx
// ends, and detaches them. Windows start at multiples of period on the wall
// clock, so agents on different hosts (with synchronized clocks) follow a
// packet through both ends in the same window. A window as long as the
// period keeps the boundaries attached.
func (e *Exporter) runStageWindows(ctx context.Context, window, period time.Duration) {
	defer e.setStageWindow(false)
	if window >= period {
		<-ctx.Done()
		return
	}
	if !sleepUntil(ctx, time.Now().Add(window)) {
		return
	}
	e.setStageWindow(false)
	for {
		now := time.Now()
		start := now.Truncate(period)
		if !now.Before(start.Add(window)) {
			start = start.Add(period)
		}
		if !sleepUntil(ctx, start) {
			return
		}
		e.setStageWindow(true)
		if !sleepUntil(ctx, start.Add(window)) {
			return
		}
		e.setStageWindow(false)
	}
}

// setStageWindow opens or closes a window; a failure is logged and the
// next window tries again.
func (e *Exporter) setStageWindow(open bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stack == nil {
		return
	}
	if !open {
		e.traceXDP(false)
		if err := e.stack.DetachPath(); err != nil {
			e.logger.Warn("detach stage boundaries", "err", err)
		}
		return
	}
	if err := e.stack.AttachPath(); err != nil {
		e.logger.Warn("attach stage boundaries: stage latency is not sampled in this window", "err", err)
		return
	}
	e.traceXDP(true)
}

// traceXDP turns the XDP guard's pass records on for a window in which
// packets are followed: a clock read per packet the guard sees, too dear
// outside the windows.
func (e *Exporter) traceXDP(on bool) {
	if e.tracer == nil || e.xdpTrace == nil {
		return
	}
	if err := e.xdpTrace(on); err != nil {
		e.logger.Warn("switch the xdp guard's pass records", "on", on, "err", err)
	}
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
