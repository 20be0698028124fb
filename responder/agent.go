package responder

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/packetscope/packetscope/agentapi"
	"github.com/packetscope/packetscope/rule"
)

// Agent is what the responder needs from a PacketScope agent's API;
// *agentapi.Client is the real one.
type Agent interface {
	Traffic(ctx context.Context, from, to time.Time, maxSamples int) (agentapi.TrafficReport, error)
	ListRules(ctx context.Context) ([]rule.Rule, error)
	AddRule(ctx context.Context, r rule.Rule) (rule.Rule, error)
	DeleteRule(ctx context.Context, id string) error
}

// isPermanent reports whether an agent error will not go away by retrying:
// the agent refused the request itself (4xx other than 408/429).
func isPermanent(err error) bool {
	if ae, ok := agentapi.AsAPIError(err); ok {
		return ae.IsClientError() && ae.Status != 408 && ae.Status != 429
	}
	return false
}

// agentFailure describes an agent error for the audit trail and for
// Alertmanager without a byte the agent (or whatever answered at its
// address) wrote, and without the dial error's text: the status code and a
// fixed phrase. A configured agent is trusted to hold rules, not to write
// into the responder's records, and a dial error quoted back to a webhook
// caller is a port-scan oracle.
func agentFailure(op string, err error) string {
	if err == nil {
		return ""
	}
	if ae, ok := agentapi.AsAPIError(err); ok {
		s := fmt.Sprintf("%s: agent answered %d %s", op, ae.Status, http.StatusText(ae.Status))
		if f := SanitizeIdent(ae.Field); ae.Status == http.StatusBadRequest && f != "" {
			s += " (field " + f + ")"
		}
		return s
	}
	var ue *url.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ue) && ue.Timeout():
		return op + ": agent timed out"
	case errors.Is(err, context.Canceled):
		return op + ": canceled"
	case errors.As(err, &ue):
		return op + ": agent unreachable"
	}
	if errors.Is(err, errUnconfigured) {
		return op + ": not a configured agent"
	}
	return op + ": agent answer unreadable"
}

// agentKey is how an alert names an agent: host:port as Prometheus' instance
// label writes the scrape target, host lower-cased.
func agentKey(hostport string) (string, bool) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil || host == "" || port == "" || strings.ContainsAny(host, "/?#@ \\") {
		return "", false
	}
	return net.JoinHostPort(strings.ToLower(host), port), true
}

// errUnconfigured is what a call to an agent that is not configured gets.
var errUnconfigured = errors.New("not a configured agent")

// unconfiguredAgent stands for an agent URL that is not (or no longer)
// configured: nothing is dialed.
type unconfiguredAgent struct{}

func (unconfiguredAgent) Traffic(context.Context, time.Time, time.Time, int) (agentapi.TrafficReport, error) {
	return agentapi.TrafficReport{}, errUnconfigured
}
func (unconfiguredAgent) ListRules(context.Context) ([]rule.Rule, error) { return nil, errUnconfigured }
func (unconfiguredAgent) AddRule(context.Context, rule.Rule) (rule.Rule, error) {
	return rule.Rule{}, errUnconfigured
}
func (unconfiguredAgent) DeleteRule(context.Context, string) error { return errUnconfigured }
