# haroll: build, check and demo. `make test` is what CI runs (through .ci/run, which first installs
# HAProxy and starts Docker with .ci/deps).

GO ?= go
# Go from the official tarball lives here on a fresh machine; appended, so a go on PATH wins.
export PATH := $(PATH):/usr/local/go/bin

.PHONY: build test test-unit demo bench clean proto

build:
	$(GO) build -o bin/haroll ./cmd/haroll

# Every step must pass: unformatted files, vet findings or a failing test fail make.
test:
	@unformatted="$$(gofmt -l .)"; \
	if [ -n "$$unformatted" ]; then echo "gofmt: these files need formatting (run gofmt -w):"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...

test-unit:
	$(GO) test -short ./...

demo:
	.ci/deps
	$(GO) run ./integration/demo

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin
	$(GO) clean -testcache

# Regenerates agent/agentpb from agent.proto. Needs protoc (Debian's protobuf-compiler); the Go
# plugins are installed at pinned versions.
PROTOC_GEN_GO_VERSION ?= v1.36.10
PROTOC_GEN_GO_GRPC_VERSION ?= v1.5.1
GOBIN_DIR := $(shell $(GO) env GOPATH)/bin
proto:
	command -v protoc >/dev/null || apt-get install -y -q protobuf-compiler
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	$(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	PATH="$(GOBIN_DIR):$$PATH" protoc -I agent/agentpb -I /usr/include \
		--go_out=agent/agentpb --go_opt=paths=source_relative \
		--go-grpc_out=agent/agentpb --go-grpc_opt=paths=source_relative \
		agent/agentpb/agent.proto
