# keyhole: the README's two commands are `go run ./cmd/keyhole demo` and `make test`.
GO       ?= go
FUZZTIME ?= 10s
BIN      := bin/keyhole

.PHONY: all build demo test check unit fuzz interop browser clean

all: build

build:
	$(GO) build -trimpath -o $(BIN) ./cmd/keyhole

demo: build
	./$(BIN) demo

# test runs everything CI runs: static checks, unit tests with the race
# detector (the NAT lab included), every fuzz target briefly, the interop tests against
# independent implementations from npm, and the browser client in
# Chromium against the Go listener.
test: check unit fuzz interop browser

check:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed on:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

# unit includes the NAT lab (tests/natlab), which runs bin/keyhole in
# network namespaces: it needs root, and fails under CI=true without it.
unit: build
	KEYHOLE_BIN=$(CURDIR)/$(BIN) $(GO) test -race -count=1 ./...

fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) bash scripts/fuzz.sh

interop: build
	cd tests/interop && npm ci --no-audit --no-fund
	KEYHOLE_BIN=$(CURDIR)/$(BIN) node --test tests/interop/

# browser type-checks and bundles the TypeScript client (web/), then runs
# its unit tests and the real-Chromium tests against bin/keyhole. It uses
# the system chromium (or $$CHROMIUM); a missing browser fails under CI=true.
browser: build
	cd web && npm ci --no-audit --no-fund && npm run typecheck && KEYHOLE_BIN=$(CURDIR)/$(BIN) npm test

clean:
	rm -rf bin tests/interop/node_modules web/node_modules web/dist
