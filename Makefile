# Segue — build, run and test. `make run` and `make test` set up what they
# need on a Debian machine (apt packages are installed only when missing).

GO       ?= go
CONFIG   ?= configs/segue.yaml
BIN      := bin/segue
VERSION  := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)

# Debian packages the end-to-end tests drive: a browser, SIP peers, audio
# tools, a TURN server, tc to shape links, libopus for the optional cgo
# Opus build, sipvicious for the extension sweep of the attack tests,
# iptables to drop packets on a leg, postgresql for the store's second
# driver (its tests start a private server), and nats-server for the
# two-node cluster smoke test.
TEST_PKGS := chromium chromium-driver sip-tester baresip sox coturn iproute2 libopus-dev pkg-config ca-certificates sipvicious iptables postgresql nats-server

.PHONY: all build run test test-deps unit race e2e vet fmt-check fuzz bench bench-chat bench-video opus-cgo clean bench-calls soak test-badnet

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/segue

run: build
	$(BIN) serve --config $(CONFIG)

# The whole suite: formatting, vet, unit tests with the race detector, the
# cgo Opus build's tests, then the end-to-end tests against real peers.
test: test-deps fmt-check vet race opus-cgo e2e

test-deps:
	@missing=""; for p in $(TEST_PKGS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...
	$(GO) vet -tags e2e ./...

unit:
	$(GO) test ./...

race:
	$(GO) test -race -count=1 ./...

# The optional libopus (cgo) build of the Opus codec passes the same tests.
opus-cgo:
	$(GO) test -tags "libopus nolibopusfile" -count=1 ./transcode/...

e2e:
	$(GO) test -tags e2e -count=1 -timeout 20m ./test/...
	$(GO) test -tags e2e -count=1 -timeout 5m -run '^TestChrome' ./webrtc/
	$(GO) test -tags e2e -count=1 -timeout 5m -run '^TestChurnSmoke$$' ./bench/callload/

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Every native fuzz target in the module, one after the other, each for
# FUZZTIME (default 10 minutes; e.g. make fuzz FUZZTIME=30s). A crash
# stops the run; go test writes the input under the package's
# testdata/fuzz/<Target>/, where it stays as a seed once fixed. Not part
# of make test (the seeds are: they run as ordinary tests).
FUZZTIME ?= 10m
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$f ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

clean:
	rm -rf bin

# What relaying video costs the gateway: BenchmarkRelay720p, an e2e
# benchmark in test/ (SEGUE_BENCH_STREAMS=1,4,8 and SEGUE_BENCH_SECONDS=20
# change the levels and the measuring time). Figures go to BENCHMARKS.md
# by hand.
bench-video:
	$(GO) test -tags e2e -run '^$$' -bench Relay720p -benchtime 1x ./test/

# Chat load on loopback: a gateway on the bench config in a temp dir, then
# bench/chatload against it: AGENTS agents (at most 10 in the bench
# config) share CUSTOMERS conversations whose customers all send MSGS
# messages at once, each as soon as its last is acknowledged (the
# saturation throughput); then, against the same gateway, new customers
# offer RATE messages a second together on a schedule (default 10000;
# RATE=0 skips it): the latency at that load. It reports the generator's
# and the gateway's CPU time while the messages flowed; PROFILE=file also
# saves a CPU profile of the gateway in the first run (PROFILE_FOR long,
# default 3s, from the start of the sending; read it with go tool pprof
# bin/segue file); RATE_PROFILE=file profiles the rate run the same way
# (from its start, PROFILE_FOR long). Each run stops after TIMEOUT
# (default 2m; raise it for large MSGS). BENCH_BIN=path runs that gateway
# binary instead of building bin/segue (to compare builds with the same
# generator). Figures go to BENCHMARKS.md by hand.
BENCH_BIN ?= $(BIN)
bench-chat: $(if $(filter $(BIN),$(BENCH_BIN)),build)
	@dir=$$(mktemp -d); cp bench/chatload/segue-bench.yaml $$dir/; \
	( cd $$dir && exec $(abspath $(BENCH_BIN)) serve --config segue-bench.yaml ) & pid=$$!; \
	for i in $$(seq 50); do curl -fs http://127.0.0.1:8090/readyz >/dev/null && break; sleep 0.1; done; \
	$(GO) run ./bench/chatload -url http://127.0.0.1:8090 -agents $${AGENTS:-10} -customers $${CUSTOMERS:-$${CONVS:-500}} -messages $${MSGS:-40} \
		-admin http://127.0.0.1:8091 -timeout $${TIMEOUT:-2m} $(if $(PROFILE),-cpuprofile $(abspath $(PROFILE)) -profile-for $(or $(PROFILE_FOR),3s)); rc=$$?; \
	if [ $$rc = 0 ] && [ "$${RATE:-10000}" != 0 ]; then \
		$(GO) run ./bench/chatload -url http://127.0.0.1:8090 -agents $${AGENTS:-10} -customers $${CUSTOMERS:-$${CONVS:-500}} -messages $${MSGS:-40} \
			-admin http://127.0.0.1:8091 -rate $${RATE:-10000} -timeout $${TIMEOUT:-2m} $(if $(RATE_PROFILE),-cpuprofile $(abspath $(RATE_PROFILE)) -profile-for $(or $(PROFILE_FOR),3s)); rc=$$?; \
	fi; \
	kill $$pid; wait $$pid; rm -rf $$dir; exit $$rc

# Concurrent calls on loopback, side by side (bench/callload -compare):
# Segue with gopus, with libopus, with G.711 from the browser, and
# rtpengine doing the same Opus <-> PCMU work, each pinned to CPU 1 with the
# generator and the SIPp echo phone on CPU 0, then the codec floor. A short
# run (CALLS=20 calls held HOLD=20s each, about 3 minutes); not part of
# make test. Figures go to BENCHMARKS.md by hand.
BENCH_CALL_PKGS := sip-tester rtpengine-daemon libopus-dev pkg-config
bench-calls:
	@missing=""; for p in $(BENCH_CALL_PKGS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	$(GO) run ./bench/callload -compare -build -calls $${CALLS:-20} -hold $${HOLD:-20s} -ramp 10

# Voice over lossy links: no loss, 5 % and 10 % random loss of the audio
# toward the gateway, on the browser leg (with and without the customer's
# Opus FEC) and on the SIP leg, in a network namespace of the test's own
# (root, iptables); then 50 and 100 ms of jitter on each leg. make e2e
# runs three of these cases. Figures go to docs/operations.md by hand.
test-badnet:
	SEGUE_BADNET_MATRIX=1 $(GO) test -tags e2e -count=1 -v -run '^TestVoiceOnBadNetworks$$' ./test/

# The soak: bench/callload -churn for SOAK (default 30m; e.g. make soak
# SOAK=2m). A gateway on loopback with SIPp echoing behind its trunk;
# chats, calls and video sessions open and close at a steady rate at half
# the capacity BENCHMARKS.md measured (CHURN_FLAGS passes more flags, e.g.
# "-churn-calls 20 -session 20s"); afterwards its goroutines, descriptors,
# UDP sockets, heap and RSS must be back to their baseline and no session
# may have failed, else the exit status is 1. Not part of make test (its
# 20-second smoke, TestChurnSmoke, is). Figures go to BENCHMARKS.md by hand.
SOAK ?= 30m
soak: build
	$(GO) run ./bench/callload -churn -pin=false -segue-bin $(BIN) -churn-for $(SOAK) $(CHURN_FLAGS)

# The cluster: two gateways on one PostgreSQL and one nats-server
# (JetStream on), each started by the tests on free loopback ports, with
# kamailio in front (deploy/kamailio); chat, voice and the supervisors'
# board across nodes, nodes killed with -9 (customers resume, waiting
# conversations and trunk registrations move, call-backs go on). make test runs only
# TestClusterChatAcrossNodes. See docs/scaling.md.
CLUSTER_PKGS := postgresql nats-server kamailio
.PHONY: test-cluster
test-cluster:
	@missing=""; for p in $(CLUSTER_PKGS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	$(GO) test -tags 'e2e cluster' -count=1 -timeout 10m -v -run '^TestCluster' ./test/

# Chat load across two cluster nodes (bench/chatload pointed at both, on
# one PostgreSQL and one nats-server): CUSTOMERS, MSGS; ONE_NODE=1 for
# one node on the same store. Needs test-cluster's packages. Figures go
# to docs/scaling.md by hand.
.PHONY: bench-chat-cluster
bench-chat-cluster:
	CUSTOMERS=$${CUSTOMERS:-500} MSGS=$${MSGS:-40} $(GO) test -tags 'e2e cluster' -count=1 -v -run '^TestChatLoadAcrossNodes$$' ./test/
