// Package bpf holds PacketScope's eBPF programs, their bpf2go-generated Go
// bindings (committed, so `go build` needs no clang) and typed loaders.
package bpf

// Regenerate with `make generate` (needs clang-16 and libbpf-dev).
//go:generate go tool bpf2go -cc clang-16 -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I./include" -type traffic_key -type traffic_value -type traffic_cell -type drop_key -type trace_record -type reaction_record stack stack.bpf.c
//go:generate go tool bpf2go -cc clang-16 -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I./include" -type guard_sample guard guard.bpf.c
