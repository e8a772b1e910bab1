# haroll: build, check and demo. `make test` is what CI runs (through .ci/run, which first installs
# HAProxy and starts Docker with .ci/deps).

GO ?= go
# Go from the official tarball lives here on a fresh machine; appended, so a go on PATH wins.
export PATH := $(PATH):/usr/local/go/bin

.PHONY: build test test-unit fuzz demo bench bench-bluegreen bench-fleet bench-fleet-inprocess clean proto dist

build:
	$(GO) build -o bin/haroll ./cmd/haroll

# Every package runs with -race against HAProxy 2.6 (Debian 12's /usr/sbin/haproxy, HAPROXY_BIN
# emptied so nothing else is picked), packaging first (go test starts the packages in the order given,
# two at a time, and its test, a compile of haroll as `make dist` does, is the longest), except the
# integration package itself: it then runs alone,
# so that its load tests have the 2 cores to themselves (main_test.go says which of them run two at
# once: those that mostly wait, each on a host of its own), without -race (the code under test there is
# the haroll binary it builds, which is never race-built; its own helpers, harness and loadgen, run
# under -race in the first step). Then ./integration/... again against HAProxy 3.0 LTS: HAPROXY30,
# the wrapper .ci/deps installs (Debian 13's package unpacked beside 2.6), through HAPROXY_BIN.
# Without it: a failure with CI set, else a skip that says so.
HAPROXY30 ?= $(or $(HAROLL_HAPROXY30_DIR),/opt/haroll/haproxy-3.0)/haproxy
# Tests of Docker's behaviour alone (a daemon restart, image pulls, --rm and static addresses): the
# HAProxy in front only carries the load, so the 3.0 pass skips them; the 2.6 pass runs them.
DOCKER_ONLY := TestADockerDaemonRestartMidReplacement|TestAStalledImagePull|TestAnInterruptedRedeployStopsItsPull|TestACoordinatorThatGoesAwayDuringAPull|TestAContainerCreatedWithRm|TestStaticIPAndMACAddressesAreKept
# The coordinator's tests (fleets of hosts driven over gRPC): what they ask of each host is the
# replacement every other test runs against 3.0, so the 3.0 pass skips them too (CI's time).
# TestACanaryRolloutOfBlueGreenHosts: a pair's canary share, promotion (a retirement) and undo (a
# drain and a surge's rollback) use the runtime commands the other blue/green tests run on 3.0.
COORDINATOR := TestFleetRollout|TestFleetOps|TestCanaryRollout|TestResumeAfterTheCoordinatorIsKilled|TestNetworkCut|TestAgentMetricsCountARedeployThroughTheDaemon|TestACanaryRolloutOfBlueGreenHosts
# Tests of the agent's own recovery, whose HAProxy side (set weight, maint, ready, addr, show stat
# and servers state) every other test runs against 3.0; 2.6 runs them (CI's time), one reason each:
#   TestSIGKILLInEachPhase...: the agent's journal and recover after a SIGKILL.
#   TestHAProxyOrDockerNotAnswering...: a socket switch in front of HAProxy and Docker; the agent's
#     timeouts and rollback, the same whatever answers behind the switch.
#   TestARollbackWaitsForAStoppingOldContainer...: Docker's stop grace of the old container.
#   TestARedeployOfAWorkingImageTakesOver...: the take-over of a slot whose container Docker removed.
#   TestAPostReplaceHook...: the agent's hook runner and the rollback it triggers.
AGENT_ONLY := TestSIGKILLInEachPhaseLeavesEverySlotServing|TestHAProxyOrDockerNotAnsweringMidReplacement|TestARollbackWaitsForAStoppingOldContainerBeforeReviving|TestARedeployOfAWorkingImageTakesOverASlotWhoseOldContainerWasRemoved|TestAPostReplaceHookThatFailsRollsTheSlotBack
SKIP_30 := $(DOCKER_ONLY)|$(COORDINATOR)|$(AGENT_ONLY)

# Every step must pass: unformatted files, vet findings or a failing test fail make.
test:
	@unformatted="$$(gofmt -l .)"; \
	if [ -n "$$unformatted" ]; then echo "gofmt: these files need formatting (run gofmt -w):"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	HAPROXY_BIN= $(GO) test -race -count=1 -timeout 15m $$($(GO) list ./packaging; $(GO) list ./... | grep -v -e '/integration$$' -e '/packaging$$')
	@echo "make test: integration tests against $$( (/usr/sbin/haproxy -v || haproxy -v) 2>/dev/null | head -n 1)"
	HAPROXY_BIN= $(GO) test -count=1 -parallel 2 -timeout 25m ./integration/
	@if [ -x '$(HAPROXY30)' ]; then \
		echo "make test: integration tests again, against $$('$(HAPROXY30)' -v 2>&1 | head -n 1)"; \
		echo "HAPROXY_BIN='$(HAPROXY30)' $(GO) test -count=1 -parallel 2 -timeout 20m -skip '$(SKIP_30)' ./integration/..."; \
		HAPROXY_BIN='$(HAPROXY30)' $(GO) test -count=1 -parallel 2 -timeout 20m -skip '$(SKIP_30)' ./integration/...; \
	elif [ -n "$$CI" ]; then \
		echo "make test: ERROR: the HAProxy 3.0 wrapper $(HAPROXY30) is missing and CI is set (run .ci/deps)"; exit 1; \
	else \
		echo "make test: SKIPPING the integration tests against HAProxy 3.0: $(HAPROXY30) is missing (run .ci/deps, or set HAPROXY30=)"; \
	fi

test-unit:
	$(GO) test -short ./...

demo:
	.ci/deps
	$(GO) run ./integration/demo

# Runs each fuzz target for FUZZTIME, one at a time (`go test -fuzz` takes one target of one package).
# Their seed corpora (testdata/fuzz/) already run in `make test`; a failing input is written there.
# Go minimizes every new input for up to 60s by default, which stalls short runs of the slower
# targets (the config loaders): FUZZMINIMIZETIME bounds it, in runs.
FUZZTIME ?= 10s
FUZZMINIMIZETIME ?= 100x
FUZZ_TARGETS := rollout:FuzzParseSize rollout:FuzzParseMaxFailures rollout:FuzzNewPlan \
	runtime:FuzzParseStat runtime:FuzzParseInfo runtime:FuzzParseAdmin runtime:FuzzParseReply \
	runtime:FuzzValidateName internal/cli:FuzzLoadAgentConfig internal/cli:FuzzLoadCoordinatorConfig \
	agent:FuzzRedeployRequestValidation
# Go's fuzzing engine itself sometimes ends a run with "context deadline exceeded" and no failing
# input (its coordinator gives up on a busy worker as fuzztime ends; seen once in CI on 2 cores):
# such a run, and only such a run, is tried once more. A real failure writes its input under
# testdata/fuzz and says "Failing input written": that one fails at once.
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		for try in 1 2; do \
			echo "$(GO) test -run '^$$' -fuzz '^$$name$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) ./$$pkg"; \
			if $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) ./$$pkg > .fuzz.out 2>&1; then \
				cat .fuzz.out; break; fi; \
			cat .fuzz.out; \
			if [ $$try = 1 ] && grep -q 'context deadline exceeded' .fuzz.out && ! grep -q 'Failing input written' .fuzz.out; then \
				echo "fuzz: $$name: the fuzzing engine's own deadline, no failing input: once more"; continue; fi; \
			rm -f .fuzz.out; exit 1; \
		done; \
	done; rm -f .fuzz.out

# One run of everything BENCHMARKS.md reports: the deploy comparison (2016 method, docker stop/rm/run,
# haroll per strategy and blue/green) as one table with each method's lowest capacity, the same on
# fixed host ports only (what bench-bluegreen prints, its final line included), haroll per slot
# against the limit, the runtime micro-benchmarks
# against a raw socket, and the coordinator (the haroll binary) driving 1,000 simulated agents with
# production settings (bench-fleet).
# BASELINE=<git rev> adds haroll built at that revision to the first table and to the fleet's (old and
# new in one run); BENCH_AGENTS=10000 adds the fleet at 10,000 agents.
BASELINE ?=
BENCH_AGENTS ?=
bench:
	.ci/deps
	$(GO) run ./integration/bench $(if $(BASELINE),-baseline $(BASELINE))
	$(GO) test -run '^$$' -bench . -benchmem ./runtime/
	$(GO) test -run '^$$' -bench 'EventsAt10000Hosts|RolloutMetricsEventAt10000Hosts' -benchmem ./internal/live/ ./internal/metrics/
	$(MAKE) bench-fleet AGENTS=1000 $(if $(BASELINE),BASELINE=$(BASELINE))
	$(if $(BENCH_AGENTS),$(MAKE) bench-fleet AGENTS=$(BENCH_AGENTS))

# The fixed-host-port comparison alone (part of `make bench`): the 2016 method, haroll stop-first,
# start-first (ephemeral ports: another layout) and blue/green pair slots with max_surge 1 and 3,
# each with the backend's lowest capacity, then per slot against the limit and where blue/green's
# time went. Ends with one line
# `bluegreen ratio_vs_2016=<wall max_surge 1 / wall 2016> failed=<requests> capacity_min_pct=<lowest>`.
bench-bluegreen:
	.ci/deps
	$(GO) run ./integration/bench -bluegreen

# The coordinator, `haroll rollout` built from the tree, in a process of its own, driving AGENTS
# simulated agents (child processes; mutual TLS with `haroll certs` keys, a state file on disk, the
# progress to a file, metrics on, 2-5 s slots): a table of where the time goes, then one line
# `fleet agents=N total_s=... ideal_s=... overhead_pct=... coordinator_rss_mb=... cpu_ms_per_host=...`
# per build. BASELINE=<git rev> runs haroll built at that revision first, in the same run.
# 10,000 agents take a few minutes per build.
AGENTS ?= 1000
bench-fleet:
	$(GO) run ./bench/fleet -agents $(AGENTS) $(if $(BASELINE),-baseline $(BASELINE))

# The coordinator's executor in-process against an in-memory fleet (no network, no TLS) with a state
# file: a cost that grows faster than the fleet shows as ns/host rising with FLEET_SIZES.
FLEET_SIZES ?= 10000,100000
bench-fleet-inprocess:
	HAROLL_BENCH_FLEET_SIZES=$(FLEET_SIZES) $(GO) test -run '^$$' -bench 'FleetInProcess' -benchtime 1x -timeout 60m ./rollout/

# The Debian package, dist/haroll_<version>_amd64.deb: haroll built static (CGO_ENABLED=0) with
# VERSION stamped into `haroll version`, the agent's systemd unit, /etc/haroll/agent.yaml (a conffile)
# and the examples. nfpm builds it as a library (packaging/); the binary never imports it.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
ARCH ?= amd64
dist:
	$(GO) run ./packaging/cmd/dist -version '$(VERSION)' -arch '$(ARCH)' -out dist

clean:
	rm -rf bin dist
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
