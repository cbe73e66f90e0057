// Package bench is herald's load generator, behind `herald bench`: it
// measures a running server end to end, over real sockets, with a client
// cheap enough per message to share a small machine with the server.
//
// Scenarios:
//
//   - RunFanout: N subscribers on one topic (SSE or long polling, behind
//     the Transport interface), a publisher paced at R events/s; every
//     delivery is checked (lost, duplicate, out of order) and its
//     publish→deliver latency goes into a log-linear histogram
//     (package histogram). With Procs > 1 the subscribers live in child
//     processes (RunFanoutWorker) and the results are merged.
//   - RunIdle: N idle connections, the server's RSS per connection.
//   - RunPublish: HTTP publish throughput, single events or batches; or
//     gRPC Publish and PublishStream throughput (grpcpublish.go).
//
// What keeps the client cheap: connections are raw TCP with hand-written
// HTTP/1.1 (httpConn, SSE.Open), SSE frames are read with FrameReader
// without allocating, payloads are parsed without decoding JSON, and the
// latency histogram is a fixed array of atomic counters. What remains per
// delivery is mostly the read(2) itself (about 2/3 of the client's CPU).
// gRPC goes over h2Conn, a minimal HTTP/2 client with pre-encoded headers
// and hand-encoded messages, parsed in place (h2.go, grpc.go).
//
// Goroutine ownership: a subGroup owns one goroutine per subscriber (ended
// by stop, which closes every stream) and, with the epoll reader, the
// reactor's loops (ended by stop after the subscribers); a pacedPublisher owns its workers
// (ended when run returns); a progress line owns its goroutine (ended by
// stop); a procGroup owns its child processes (ended by stop or kill); a
// grpcMux (gRPC streams sharing a connection) owns its reader goroutine
// (ended when the connection closes, after its last stream is closed); a
// gRPC publish run owns its workers (ended with the run's deadline).
package bench
