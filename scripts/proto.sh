#!/usr/bin/env bash
# Generates the Go code of api/herald/v1/herald.proto with pinned tools, or
# checks that the committed code is what those tools generate.
#
#   scripts/proto.sh generate   write api/herald/v1/*.pb.go
#   scripts/proto.sh check      regenerate into a temporary directory and
#                               fail if it differs from the committed code
#
# protoc comes from Debian's protobuf-compiler (its version is written into
# the generated files, so it is checked too); protoc-gen-go and
# protoc-gen-go-grpc are installed from the Go module proxy into
# $TOOLS_BIN when missing or of another version. The Makefile passes the
# pinned versions (PROTOC_VERSION, PROTOC_GEN_GO_VERSION,
# PROTOC_GEN_GO_GRPC_VERSION).
#
# Without protoc, "check" skips with a loud message, unless
# HERALD_REQUIRE_INTEGRATION=1 (CI), where it fails.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-}
GO=${GO:-go}
PROTOC_VERSION=${PROTOC_VERSION:?set by the Makefile}
PROTOC_GEN_GO_VERSION=${PROTOC_GEN_GO_VERSION:?set by the Makefile}
PROTOC_GEN_GO_GRPC_VERSION=${PROTOC_GEN_GO_GRPC_VERSION:?set by the Makefile}
TOOLS_BIN=${TOOLS_BIN:-$PWD/bin/tools}
PROTO_DIR=api/herald/v1
PROTO_FILE=$PROTO_DIR/herald.proto

case "$mode" in
generate|check) ;;
*) echo "usage: $0 generate|check" >&2; exit 2 ;;
esac

if ! command -v protoc >/dev/null 2>&1; then
  msg="protoc is missing: install Debian's protobuf-compiler (apt-get install protobuf-compiler, version $PROTOC_VERSION)"
  if [ "$mode" = check ] && [ "${HERALD_REQUIRE_INTEGRATION:-}" != 1 ]; then
    echo "!!! proto-check SKIPPED: $msg" >&2
    exit 0
  fi
  echo "proto: $msg" >&2
  exit 1
fi
have=$(protoc --version | awk '{print $2}')
if [ "$have" != "$PROTOC_VERSION" ]; then
  echo "proto: protoc is $have, the generated code is pinned to $PROTOC_VERSION (Debian's protobuf-compiler)" >&2
  exit 1
fi

# tool NAME MODULE_PATH VERSION VERSION_OUTPUT: install NAME into TOOLS_BIN
# unless it is there and prints VERSION_OUTPUT for --version.
tool() {
  local name=$1 pkg=$2 version=$3 want=$4
  if [ -x "$TOOLS_BIN/$name" ] && [ "$("$TOOLS_BIN/$name" --version 2>/dev/null)" = "$want" ]; then
    return
  fi
  echo "proto: installing $name $version into $TOOLS_BIN" >&2
  mkdir -p "$TOOLS_BIN"
  GOBIN="$TOOLS_BIN" "$GO" install "$pkg@$version"
}
tool protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION" \
  "protoc-gen-go $PROTOC_GEN_GO_VERSION"
tool protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION" \
  "protoc-gen-go-grpc ${PROTOC_GEN_GO_GRPC_VERSION#v}"

# gen OUT: generate into OUT (the Go files land in OUT/$PROTO_DIR).
gen() {
  protoc -I . \
    --plugin=protoc-gen-go="$TOOLS_BIN/protoc-gen-go" \
    --plugin=protoc-gen-go-grpc="$TOOLS_BIN/protoc-gen-go-grpc" \
    --go_out="$1" --go_opt=paths=source_relative \
    --go-grpc_out="$1" --go-grpc_opt=paths=source_relative \
    "$PROTO_FILE"
}

if [ "$mode" = generate ]; then
  gen .
  echo "proto: generated $PROTO_DIR/herald.pb.go and herald_grpc.pb.go"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gen "$tmp"
stale=0
for f in herald.pb.go herald_grpc.pb.go; do
  if ! diff -u "$PROTO_DIR/$f" "$tmp/$PROTO_DIR/$f" >"$tmp/diff" 2>&1; then
    echo "proto-check: $PROTO_DIR/$f is stale: run 'make proto' and commit the result" >&2
    head -40 "$tmp/diff" >&2
    stale=1
  fi
done
exit $stale
