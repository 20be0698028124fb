// Package rule is the one definition of what a PacketScope rule means: the
// rule schema (Rule, Match and its JSON), its validation, the packet model
// (Packet, Sample), the frame parser and the Go reference matcher the XDP
// guard must agree with (the differential test in guard/ proves it).
//
// It is pure Go and loads nothing: the responder, the CLI and the agent API
// share it without linking eBPF.
package rule
