# keyhole: the README's two commands are `go run ./cmd/keyhole demo` and `make test`.
GO       ?= go
FUZZTIME ?= 10s
BIN      := bin/keyhole

.PHONY: all build demo test check unit fuzz interop clean

all: build

build:
	$(GO) build -trimpath -o $(BIN) ./cmd/keyhole

demo: build
	./$(BIN) demo

# test runs everything CI runs: static checks, unit tests with the race
# detector, every fuzz target briefly, and the interop tests against
# independent implementations from npm.
test: check unit fuzz interop

check:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed on:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 ./...

fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) bash scripts/fuzz.sh

interop: build
	cd tests/interop && npm ci --no-audit --no-fund
	KEYHOLE_BIN=$(CURDIR)/$(BIN) node --test tests/interop/

clean:
	rm -rf bin tests/interop/node_modules
