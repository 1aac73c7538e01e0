# Shortcuts for the test suites. `go test ./...` (what .ci/run runs, with
# -race) stays the one everyday command; these are the slow, documented
# extras of docs/guarantees.md.

GO       ?= go
FUZZTIME ?= 5m

.PHONY: test chaos fuzz image

# The everyday tests: unit, integration (embedded NATS + emulator), the
# bad-input catalogue, goleak, and every fuzz corpus as seeds.
test:
	$(GO) test ./...

# The chaos suite: builds `reconciler` and `nats-server`, runs the crash,
# NATS-restart, API-fault and bad-input scenarios against them and prints
# a table of figures (scripts/chaos/doc.go lists the knobs, e.g.
# CHAOS_SCRIPTS=500 make chaos for a quicker run).
chaos:
	$(GO) test -tags chaos -count=1 -run . -v -timeout 60m ./scripts/chaos/

# Every fuzz target for FUZZTIME each, one at a time; the corpora they
# build are copied into testdata/fuzz/ (commit them).
fuzz:
	FUZZTIME=$(FUZZTIME) scripts/chaos/fuzz.sh

# The image of deploy/Dockerfile without a container engine: a tarball
# that `docker load` and `crane push` read (docs/deploy.md, "Image").
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
image:
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false \
	  -ldflags "-s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)" \
	  -o bin/reconciler-linux ./cmd/reconciler
	$(GO) run ./deploy/image --binary bin/reconciler-linux \
	  --version $(VERSION) --commit $(COMMIT) --tag reconciler:$(VERSION) --out reconciler.tar
