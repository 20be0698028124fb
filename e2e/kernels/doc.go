// Package kernels holds the live smoke tests that `make test-kernels`
// (scripts/test-kernels.sh) builds with `go test -c -tags kernelsmoke` into
// an initramfs and runs inside a qemu guest booted on another kernel than
// the host's (Debian 12's stock 6.1): the agent starts, counts traffic and
// drops, the guard drops a flood, rules survive a restart, and
// packetscope_feature_enabled says what the kernel lacks.
//
// The tests carry the kernelsmoke build tag: they change the machine they
// run on (namespaces, XDP, pins) and expect the guest's init, so `go test
// ./...` on a host does not build them. `go vet -tags kernelsmoke
// ./e2e/kernels` checks them; the script runs it.
package kernels
