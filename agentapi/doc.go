// Package agentapi is the agent's HTTP contract: the handlers of
// /api/v1/rules and /api/v1/traffic over a RuleStore interface, the client the
// responder and the CLI use, the recent-traffic window the handlers report
// from, and the node addresses no rule may block.
//
// It knows HTTP and rules, not the kernel: guard/ implements RuleStore.
package agentapi
