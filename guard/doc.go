// Package guard owns the XDP guard's kernel side: it loads, pins and attaches
// the XDP program (bpf/guard.bpf.c), compiles rules (package rule) into its
// maps (RuleTable), reads the sampled headers it emits (the sampler) and
// exports its counters as Prometheus collectors.
//
// The guard outlives the agent: its link and maps are pinned, so rules stay
// in force across restarts and a restarted agent adopts them.
package guard
