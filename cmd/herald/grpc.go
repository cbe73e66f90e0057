package main

import (
	"fmt"

	"github.com/heraldhq/herald/client"
)

// defaultGRPCAddr is where the client commands find the gRPC API when
// --grpc-addr is not given: the server's default grpc.addr.
const defaultGRPCAddr = "127.0.0.1:9090"

// Transports of herald publish --transport.
const (
	publishHTTP = "http"
	publishGRPC = string(client.TransportGRPC)
)

// newTransportClient returns a client of the HTTP API at server, or of the
// gRPC API at grpcAddr when useGRPC is set. The caller closes it.
func newTransportClient(server string, useGRPC bool, grpcAddr string) (*client.Client, error) {
	if useGRPC {
		c, err := client.NewGRPC(grpcAddr, clientOptions()...)
		if err != nil {
			return nil, fmt.Errorf("--grpc-addr: %w", err)
		}
		return c, nil
	}
	return newAPIClient(server)
}
