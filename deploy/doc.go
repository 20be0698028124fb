// Package deploy holds PacketScope's deployment files: prometheus.yml and
// alertmanager.yml for the single-host stack and the end-to-end tests,
// Kubernetes manifests (kubernetes/) and a systemd unit (systemd/). It has no
// Go code: its tests validate the files with the tools and types that will
// read them.
package deploy
