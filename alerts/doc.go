// Package alerts holds PacketScope's Prometheus alerting rules
// (packetscope.rules.yml), their promtool unit tests and the runbook. It has
// no Go code: its tests run promtool over the files and check that every
// alert carries what Alertmanager, the responder and an operator need.
package alerts
