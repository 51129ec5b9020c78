# Custody. `make demo` runs the main job on the embedded store; `make test`
# runs every test. Both install what is missing first.
GO ?= go
BIN := $(CURDIR)/bin
export CUSTODY_CHDB_HOST := $(BIN)/custody-chdb

.PHONY: all build demo test test-go fuzz bench libchdb azurite demo-data clean

all: build

libchdb:
	@deploy/local/install-libchdb.sh >/dev/null

azurite:
	@deploy/local/install-azurite.sh >/dev/null

build:
	$(GO) build -o $(BIN)/custody ./cmd/custody
	$(GO) build -o $(BIN)/custody-chdb ./cmd/custody-chdb

demo: libchdb build
	deploy/local/demo.sh

test: libchdb azurite build test-go fuzz

test-go:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 30m ./...

# Short fuzz runs of every decoder, seeded with the real samples.
FUZZTIME ?= 10s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzProcess$$' -fuzztime $(FUZZTIME) ./normalize
	$(GO) test -run '^$$' -fuzz '^FuzzScanner$$' -fuzztime $(FUZZTIME) ./normalize

bench: libchdb build
	$(GO) test -run '^$$' -bench . -benchtime 3x ./storage
	$(GO) test -run '^$$' -bench . -benchtime 3s -cpu 1 ./normalize

demo-data:
	python3 -c 'import json,glob; print("\n".join(json.dumps(json.load(open(f)),separators=(",",":")) for f in sorted(glob.glob("normalize/testdata/eventhubs/*.json")) if not (f.endswith("_expected.json") or f.endswith(".meta.json") or "generic" in f)))' > deploy/local/demo/eventhubs-bodies.jsonl

clean:
	rm -rf $(BIN) custody-demo
