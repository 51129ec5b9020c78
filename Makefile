# Custody. `make demo` runs the main job on the embedded store; `make test`
# runs every test. Both install what is missing first.
GO ?= go
BIN := $(CURDIR)/bin
export CUSTODY_CHDB_HOST := $(BIN)/custody-chdb
# The tests' stand-in for an official clickhouse binary (the engine's
# --engine-binary path; see internal/chdbtest/clickhouse), built once by
# test-go.
export CUSTODY_CLICKHOUSE_STANDIN := $(CURDIR)/.cache/bin/clickhouse

.PHONY: all build demo test test-go test-kit fuzz bench pgo libchdb azurite chromium image clean

all: build

libchdb:
	@deploy/local/install-libchdb.sh >/dev/null

azurite:
	@deploy/local/install-azurite.sh >/dev/null

# Debian's chromium for the web page's end-to-end tests (web/).
chromium:
	@deploy/local/install-chromium.sh >/dev/null

build:
	$(GO) build -o $(BIN)/custody ./cmd/custody
	$(GO) build -o $(BIN)/custody-chdb ./cmd/custody-chdb

demo: libchdb build
	deploy/local/demo.sh

test: libchdb azurite chromium build test-go test-kit fuzz

test-go:
	$(GO) build -o $(CUSTODY_CLICKHOUSE_STANDIN) ./internal/chdbtest/clickhouse
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 30m ./...

# The deploy kit's tests: a Go module of its own (deploy/kit), so that what
# they need stays out of the collector's dependencies.
# Azurite is installed in the root module's .cache, which the kit's tests
# (in their own module) would not find by walking up to their go.mod.
test-kit: libchdb azurite build
	cd deploy/kit && $(GO) vet ./... && \
	CUSTODY_AZURITE_BIN=$(CURDIR)/.cache/npm/node_modules/.bin/azurite-blob $(GO) test -count=1 -timeout 20m ./...

# Short fuzz runs of every decoder, seeded with the real samples.
# .ci/fuzz passes a run that only hit Go 1.26's -fuzztime race (see there).
# FUZZMINIMIZETIME bounds the shrinking of each new corpus input: with Go's
# default (a minute), a 10 s run that finds a large input spends the rest
# of its time shrinking it, at 0 execs/s (normalize/main_test.go).
FUZZTIME ?= 10s
FUZZMINIMIZETIME ?= 1s
FUZZ = GO=$(GO) .ci/fuzz
FUZZFLAGS = -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME)
fuzz:
	$(FUZZ) ./normalize FuzzProcess $(FUZZFLAGS)
	$(FUZZ) ./normalize FuzzScanner $(FUZZFLAGS)
	$(FUZZ) ./normalize FuzzParseRFC3339UTC $(FUZZFLAGS)
	$(FUZZ) ./normalize FuzzEscapedAudit $(FUZZFLAGS)
	$(FUZZ) ./normalize FuzzEscapedReaderProcess $(FUZZFLAGS)
	$(FUZZ) ./normalize FuzzEventJSON $(FUZZFLAGS)
	$(FUZZ) ./internal/ehbroker FuzzDecode $(FUZZFLAGS)
	$(FUZZ) ./bundle FuzzCanonicalScanner $(FUZZFLAGS)
	$(FUZZ) ./bundle FuzzCanonicalOCSF $(FUZZFLAGS)
	$(FUZZ) ./bundle FuzzOCSFLine $(FUZZFLAGS)
	$(FUZZ) ./normalize FuzzAppendJSONString $(FUZZFLAGS)

# The README's benchmark table; each line is one row.
bench: libchdb build
	$(GO) test -run '^$$' -bench Process -benchtime 3s -cpu 1 ./normalize
	$(GO) run ./normalize/internal/loadgen/gen -records 200000 > /tmp/custody-bench-load.jsonl && taskset -c 0 /usr/bin/time -v $(BIN)/custody normalize /tmp/custody-bench-load.jsonl >/dev/null && rm -f /tmp/custody-bench-load.jsonl
	$(GO) test -run '^$$' -bench 'Append$$|Verify$$|VerifyCost$$' -benchtime 10x ./storage
	CUSTODY_VERIFY_BENCH_EVENTS=3000000 $(GO) test -run '^$$' -bench VerifyMemory -benchtime 1x -timeout 30m ./storage
	$(GO) test -run '^$$' -bench 'EngineCost' -benchtime 1x ./storage
	$(GO) test -run '^$$' -bench 'ReadRows' -benchtime 3x ./storage
	$(GO) test -run '^$$' -bench RunEndToEnd -benchtime 1x ./cmd/custody
	deploy/local/bench-backfill.sh $(BIN)
	CUSTODY_EXPORT_BENCH_EVENTS=100000 $(GO) test -run '^$$' -bench Bundle -benchtime 1x ./bundle
	$(GO) test -run '^$$' -bench Page -benchtime 10x -timeout 60m ./web

# Profile-guided optimization: `go build` of ./cmd/custody uses
# cmd/custody/default.pgo, a CPU profile of the collector's hot paths (a
# backfill of the generated load, and the Event Hubs collector benchmark's
# `custody run` and `custody verify`), to inline and lay out that code
# better: ~4-5% less CPU per event end to end (README, issue 13).
# Regenerate it after large changes to those paths; profiles of PGO builds
# are fine input (https://go.dev/doc/pgo).
PGO_TMP := /tmp/custody-pgo
pgo: libchdb build
	rm -rf $(PGO_TMP) && mkdir -p $(PGO_TMP)
	$(GO) run ./normalize/internal/loadgen/gen -records 200000 > $(PGO_TMP)/load.jsonl
	cd $(PGO_TMP) && $(BIN)/custody keygen && $(BIN)/custody init && \
		CUSTODY_CPUPROFILE=$(PGO_TMP)/backfill.pprof $(BIN)/custody backfill load.jsonl
	CUSTODY_CPUPROFILE=$(PGO_TMP)/run.%p.pprof $(GO) test -run '^$$' -bench RunEndToEnd -benchtime 1x ./cmd/custody
	$(GO) tool pprof -proto $(PGO_TMP)/*.pprof > cmd/custody/default.pgo
	rm -rf $(PGO_TMP)

# The container image (deploy/kit/image): an OCI layout in dist/image/oci
# and a tarball for `docker load`, built without a container daemon from
# trimmed binaries, libchdb and pinned Debian packages; prints its digest.
# Reproducible: the same commit and inputs give the same digest.
IMAGE_REF ?= custody:$(shell git describe --tags --always 2>/dev/null || echo dev)
image: libchdb
	$(GO) build -trimpath -o dist/image/bin/custody ./cmd/custody
	$(GO) build -trimpath -o dist/image/bin/custody-chdb ./cmd/custody-chdb
	@debs="$$(deploy/image/fetch-debs.sh)" && lib="$$(deploy/local/install-libchdb.sh)" && cd deploy/kit && \
	$(GO) run ./cmd/image --custody ../../dist/image/bin/custody --custody-chdb ../../dist/image/bin/custody-chdb \
		--libchdb "$$lib" --debs "$$debs" --out ../../dist/image/oci --tarball ../../dist/image/custody.tar \
		--ref "$(IMAGE_REF)" --version "$(patsubst custody:%,%,$(IMAGE_REF))" \
		--revision "$$(git rev-parse HEAD 2>/dev/null)" --created "$$(git log -1 --format=%ct 2>/dev/null || echo 0)"

clean:
	rm -rf $(BIN) custody-demo dist
