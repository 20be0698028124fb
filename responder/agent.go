package responder

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/packetscope/packetscope/agentapi"
	"github.com/packetscope/packetscope/rule"
)

// Agent is what the responder needs from a PacketScope agent's API;
// *guard.Client is the real one.
type Agent interface {
	Traffic(ctx context.Context, from, to time.Time, maxSamples int) (agentapi.TrafficReport, error)
	ListRules(ctx context.Context) ([]rule.Rule, error)
	AddRule(ctx context.Context, r rule.Rule) (rule.Rule, error)
	DeleteRule(ctx context.Context, id string) error
}

// agentURLFor picks the agent for an alert: the configured URL, or the
// alert's instance label (host:port, as Prometheus scraped the agent).
func agentURLFor(configured string, labels map[string]string) (string, error) {
	if configured != "" {
		return strings.TrimRight(configured, "/"), nil
	}
	inst := labels["instance"]
	if inst == "" {
		return "", errors.New("no agent: set --agent.url or give the alert an instance label")
	}
	if strings.HasPrefix(inst, "http://") || strings.HasPrefix(inst, "https://") {
		u, err := url.Parse(inst)
		if err != nil || u.Host == "" {
			return "", fmt.Errorf("instance label %q is not host:port or a URL", inst)
		}
		return u.Scheme + "://" + u.Host, nil
	}
	host, port, err := net.SplitHostPort(inst)
	if err != nil || host == "" || port == "" || strings.ContainsAny(host, "/?#@ ") {
		return "", fmt.Errorf("instance label %q is not host:port", inst)
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// isPermanent reports whether an agent error will not go away by retrying:
// the agent refused the request itself (4xx other than 408/429).
func isPermanent(err error) bool {
	if ae, ok := agentapi.AsAPIError(err); ok {
		return ae.IsClientError() && ae.Status != 408 && ae.Status != 429
	}
	return false
}
