// Package dashboards holds PacketScope's Grafana dashboards (*.json, written
// by gen.go) and Grafana provisioning files (provisioning/). It has no Go
// code: its tests check that every panel query is valid PromQL and that the
// dashboards follow the conventions (fixed uid, ${datasource} variable,
// $__rate_interval, exemplars on latency panels).
package dashboards

//go:generate go run gen.go
