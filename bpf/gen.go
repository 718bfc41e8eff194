// Package bpf holds ipftrace's BPF programs, compiled by bpf2go. The
// generated Go files and objects are committed so that building ipftrace
// needs no clang; `make generate` rebuilds them.
package bpf

//go:generate go tool bpf2go -cc clang -no-global-types -type event -target amd64 Ipftrace ipftrace.c -- -I. -O2 -g -Wall -Werror
