// Package agentapi is the agent's HTTP contract: the handlers of
// /api/v1/rules and /api/v1/traffic over a RuleStore interface, the client the
// responder and the CLI use, the recent-traffic window the handlers report
// from, the node addresses no rule may block, and the slow-connection
// tracker (slowconn.go: inbound TCP connections held open with incomplete
// requests, from sock_diag, reported in /api/v1/traffic's slow_connections).
//
// It knows HTTP and rules, not the kernel: guard/ implements RuleStore.
package agentapi
