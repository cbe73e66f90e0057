// Package heraldv1 is the Go code of herald's gRPC API, version 1,
// generated from herald.proto by `make proto` (protoc-gen-go and
// protoc-gen-go-grpc, pinned in the Makefile). docs/grpc.md describes the
// API; the Go client (package client) wraps it.
package heraldv1
