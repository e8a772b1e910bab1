# haroll: build, check and demo. `make test` is what CI runs (through .ci/run, which first installs
# HAProxy and starts Docker with .ci/deps).

GO ?= go
# Go from the official tarball lives here on a fresh machine; appended, so a go on PATH wins.
export PATH := $(PATH):/usr/local/go/bin

.PHONY: build test test-unit demo bench clean

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
