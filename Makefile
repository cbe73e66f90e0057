# herald — the two commands a newcomer needs are `make run` and `make test`.
GO      ?= go
BIN     ?= bin/herald
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
FUZZTIME ?= 30s

.PHONY: run build test test-short lint bench bench-e2e bench-ws bench-grpc bench-auth bench-redis bench-webhook webhook-fault chaos fuzz clean proto proto-check

# The gRPC code generators, pinned: protoc is Debian's protobuf-compiler (its
# version is written into the generated files); the plugins are installed
# from the Go module proxy into bin/tools when missing or of another version.
PROTOC_VERSION             := 3.21.12
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1
PROTO_ENV := GO=$(GO) PROTOC_VERSION=$(PROTOC_VERSION) PROTOC_GEN_GO_VERSION=$(PROTOC_GEN_GO_VERSION) \
	PROTOC_GEN_GO_GRPC_VERSION=$(PROTOC_GEN_GO_GRPC_VERSION)

## run: build and run the server on its embedded default (memory engine, 127.0.0.1:8080)
run: build
	./$(BIN) serve

## build: build the herald binary into bin/
build:
	$(GO) build -trimpath -tags grpcnotrace -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/herald

## test: the whole test suite (what CI runs), with the race detector and vet
test: lint proto-check
	$(GO) test -race -count=1 -timeout 12m ./...
	$(GO) test -race -count=1 ./internal/group/ -args -shared

## test-short: the suite without the race detector, for a quick loop
test-short:
	$(GO) test -count=1 ./...

# staticcheck, pinned; `go run` fetches it from the module proxy once.
STATICCHECK_VERSION := v0.8.2

## lint: gofmt, go vet and staticcheck
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

## bench: the Go benchmarks of the hot paths (see docs/benchmarks.md for end-to-end runs)
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

## bench-e2e: end-to-end figures of docs/benchmarks.md (wrk, herald bench); RUNS=3
bench-e2e:
	bash scripts/bench-e2e.sh $(or $(RUNS),3)

## bench-ws: the WebSocket figures of docs/benchmarks.md (herald bench idle / fanout --transport ws, tools/fanout-floor); RUNS=3
bench-ws:
	bash scripts/bench-ws.sh $(or $(RUNS),3)

## bench-grpc: the gRPC figures of docs/benchmarks.md (herald bench publish / fanout --transport grpc); RUNS=3
bench-grpc:
	bash scripts/bench-grpc.sh $(or $(RUNS),3)

## bench-auth: the authentication figures of docs/benchmarks.md (wrk with and without an API key, JWT verification); RUNS=3
bench-auth:
	bash scripts/bench-auth.sh $(or $(RUNS),3)

## webhook-fault: issue 18's no-loss test at its full size (10,000 events, two kill -9s); EVENTS=10000
webhook-fault:
	HERALD_WEBHOOK_FAULT_EVENTS=$(or $(EVENTS),10000) $(GO) test -count=1 -run '^TestWebhookFaults$$' -v -timeout 20m ./cmd/herald/

## bench-webhook: the webhook figures of docs/benchmarks.md (herald bench webhook); RUNS=3
bench-webhook:
	bash scripts/bench-webhook.sh $(or $(RUNS),3)

## chaos: issue 17's consumer-group chaos test at full size (100,000 events, 8 workers killed at random, the server killed twice)
chaos:
	HERALD_CHAOS=1 $(GO) test -count=1 -timeout 30m -run '^TestGroupChaos$$' -v ./cmd/herald

## bench-redis: the Redis engine figures of docs/benchmarks.md (own redis-server, herald nodes with --engine redis: ceiling, publish, fan-out over 1-3 nodes, 45,000 subscribers); RUNS=3
bench-redis:
	bash scripts/bench-redis.sh $(or $(RUNS),3)

## fuzz: run every fuzz target for FUZZTIME each
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

## proto: regenerate api/herald/v1 (the gRPC API's Go code) from herald.proto
proto:
	$(PROTO_ENV) bash scripts/proto.sh generate

## proto-check: fail when the committed generated code is not what `make proto` makes
proto-check:
	$(PROTO_ENV) bash scripts/proto.sh check

clean:
	rm -rf bin
