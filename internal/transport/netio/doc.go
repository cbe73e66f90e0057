// Package netio holds what the push transports (SSE and WebSocket) share
// to write to many sockets cheaply: Pool, an on-demand worker pool that
// bounds how many goroutines a fan-out wakes, and Socket, non-blocking
// reads and writes over a connection's raw descriptor, so that a pool
// worker never waits on a client that stopped reading.
package netio
