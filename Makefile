# agentwatch — see README.md. The two commands a newcomer needs:
#   make demo   the whole job in one process, no services needed
#   make test   installs and starts Kafka + ClickHouse, then runs every test
SHELL  := /bin/bash
MODULE := github.com/agentwatch/agentwatch
GO     ?= go

# Integration tests read these; make test sets REQUIRE_INTEGRATION so a
# missing service fails the run instead of skipping tests.
export TEST_KAFKA_BROKERS    ?= 127.0.0.1:9092
export TEST_CLICKHOUSE_ADDR  ?= 127.0.0.1:9000
# The local broker's SASL_SSL listener (deploy/kafka.sh): its address, the
# test CA that signed its certificate, and the test user.
include deploy/kafka/sasl.env
export TEST_KAFKA_SASL_BROKERS  ?= 127.0.0.1:9094
export TEST_KAFKA_CA            ?= $(CURDIR)/.data/tls/ca.crt
export TEST_KAFKA_SASL_USERNAME ?= $(KAFKA_SASL_USERNAME)
export TEST_KAFKA_SASL_PASSWORD ?= $(KAFKA_SASL_PASSWORD)

# What `X version` prints and the image's labels carry. A tag when HEAD has
# one, else the short commit (with -dirty for uncommitted changes).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X $(MODULE)/internal/platform/buildinfo.version=$(VERSION) -X $(MODULE)/internal/platform/buildinfo.commit=$(COMMIT)

FUZZ := $(shell grep -lR --include='*_test.go' '^func Fuzz' pkg internal 2>/dev/null | xargs -r grep -ho '^func Fuzz[A-Za-z0-9_]*' | sed 's/^func //' | sort -u)
FUZZTIME ?= 30s

.PHONY: image bench-image chart-check all build demo test unit integration check fmt vet purity tools up down status fuzz bench bench-e2e bench-detector bench-responder bench-visibility eval clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/...

demo:
	$(GO) run ./cmd/agentwatch demo

## test: everything CI runs. Installs test tools and services when missing.
## Unit tests run last so the run ends on their results.
test: tools up check integration unit

check: fmt vet purity chart-check

## chart-check: helm lint, helm template and strict decoding of every
## rendered object into the k8s.io/api types, in deploy/helm/chartcheck,
## a Go module of its own so Helm and k8s.io stay out of go.mod.
chart-check:
	cd deploy/helm/chartcheck && $(GO) vet ./... && $(GO) test -count=1 ./...

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# pkg/ is the pure core: no network clients, no viper, no internal/.
purity:
	@bad=$$($(GO) list -deps ./pkg/... | grep -E 'segmentio/kafka-go|ClickHouse/clickhouse-go|spf13/viper|slack-go|$(MODULE)/internal' || true); \
	if [ -n "$$bad" ]; then echo "pkg/ imports impure packages:"; echo "$$bad"; exit 1; fi

# Unit tests (and fuzz seed corpora) in parallel packages. REQUIRE_BROWSER
# makes the console's browser tests fail, not skip, without chromium
# (make tools installs it).
unit:
	REQUIRE_BROWSER=1 $(GO) test -race -shuffle=on -count=1 -timeout 30m -skip '^TestIntegration' ./...

# The ClickHouse TLS tests read its secure native port, the test CA that
# signed its certificate (deploy/tls.sh) and the password-protected user of
# deploy/clickhouse/users.xml.
export TEST_CLICKHOUSE_SECURE_ADDR   ?= 127.0.0.1:9440
export TEST_CLICKHOUSE_CA            ?= $(CURDIR)/.data/tls/ca.crt
export TEST_CLICKHOUSE_USER          ?= agentwatch
export TEST_CLICKHOUSE_PASSWORD_FILE ?= $(CURDIR)/deploy/clickhouse/agentwatch.password

# Integration tests one package at a time: one of them stops ClickHouse for 30 s.
INTEGRATION_PKGS = $(shell grep -lR --include='*_test.go' '^func TestIntegration' cmd internal pkg 2>/dev/null | xargs -r -n1 dirname | sort -u | sed 's|^|./|')
# They compile first, in parallel (-exec /bin/true builds each test binary
# and runs nothing): under -p 1 the compiling is serial too, which on a cold
# cache took 236 s against 135 s in parallel.
integration:
	@log=$$(mktemp); $(GO) test -race -count=1 -exec /bin/true $(INTEGRATION_PKGS) >$$log 2>&1 || { cat $$log; rm -f $$log; exit 1; }; rm -f $$log
	REQUIRE_INTEGRATION=1 $(GO) test -race -count=1 -p 1 -timeout 30m -run '^TestIntegration' $(INTEGRATION_PKGS)

tools:
	deploy/test-tools.sh

up:
	deploy/services.sh up

down:
	deploy/services.sh down

status:
	deploy/services.sh status

## fuzz: run every fuzz target for FUZZTIME (default 30s).
fuzz:
	@for t in $(FUZZ); do \
		pkg=$$(grep -lR --include='*_test.go' "^func $$t(" pkg internal | head -1 | xargs dirname); \
		echo "== $$t in ./$$pkg"; \
		$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./$$pkg || exit 1; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 3 ./pkg/... ./internal/tools/sim/ | tee bench.txt

## image: the container image, reproducibly and without a Docker daemon
## (docs/packaging.md): IMAGE_FORMAT=docker writes a docker save archive.
IMAGE_OUT    ?= dist/agentwatch.oci.tar
IMAGE_FORMAT ?= oci
image:
	$(GO) run ./cmd/imagebuild build --out $(IMAGE_OUT) --format $(IMAGE_FORMAT) --version '$(VERSION)' --commit '$(COMMIT)'

## bench-image: the image's size, and each service's time from start to
## /readyz run from the unpacked image (chroot, needs root).
bench-image: image up
	$(GO) run ./cmd/imagebuild bench --image $(IMAGE_OUT)

## bench-e2e: ingest end to end, then again without the inventory's
## materialized views and over the SASL_SSL listener (TLS + SCRAM-SHA-512)
## in the same run, with the ratios.
bench-e2e: up
	$(GO) run ./cmd/agentwatch bench ingest --compare-views --secure-brokers $(TEST_KAFKA_SASL_BROKERS) \
		--secure-ca-file $(TEST_KAFKA_CA) --secure-sasl-mechanism scram-sha-512 \
		--secure-sasl-username $(TEST_KAFKA_SASL_USERNAME) --secure-sasl-password-file .data/kafka/sasl-password

## bench-detector: the detector's hot path, memory per agent, then the
## detector service end to end on a real events topic next to consume-only,
## then the detector binary's RSS per agent (docs/benchmarks.md has the
## 1M-agent, flood and restart runs).
bench-detector: up
	$(GO) test -run '^$$' -bench 'ProcessorAdd|WindowClose' -benchmem -count 3 ./internal/detector/detect
	$(GO) test -run '^$$' -bench 'MemoryPerAgent' -benchtime 1x -count 2 -timeout 30m ./internal/detector/detect
	$(GO) run ./cmd/agentwatch bench detector
	$(GO) build -o bin/ ./cmd/detector
	$(GO) run ./cmd/agentwatch bench detector-memory --agents 100000

## bench-responder: anomaly on the topic → revocation at a local Kong and
## alert at a local Slack, through the distributed responder on real Kafka
## and ClickHouse: 500 anomalies at 50/s; three instances at 500/s for 60 s,
## with group_wait 0 and action_wait 1s (each alert posted once, as soon as
## its revocation is done, showing it) and with action_wait 0 (posted at
## once, then updated and noted); one instance stepped up from 100/s to the
## highest rate with p99 ≤ 1 s (see --help of the command).
bench-responder: up
	$(GO) run ./cmd/agentwatch bench responder
	$(GO) run ./cmd/agentwatch bench responder --instances 3 --rate 500 --anomalies 30000
	$(GO) run ./cmd/agentwatch bench responder --instances 3 --rate 500 --anomalies 30000 --action-wait 0
	$(GO) run ./cmd/agentwatch bench responder --rates 100,200,300,400,500,600,700,800 --duration 20s

## bench-visibility: a simulated month (2,000 agents, 30 days, 50M+
## events) loaded into the bench_visibility database through the events
## insert (the inventory's views fire), then the visibility questions timed
## next to each other (docs/benchmarks.md). The database is kept: a second
## run only measures; add ARGS=--fresh to load it again.
bench-visibility: up
	$(GO) run ./cmd/agentwatch bench visibility $(ARGS)

## eval: the detection-quality evaluation in full: the Numenta Anomaly
## Benchmark (all 58 files, NAB_DATA) and the agent-attack scenarios on a
## tuning seed and a held-out one. Tables print and go to EVAL_OUT with the
## NAB results and plots. make test runs both on a reduced set.
NAB_DATA ?= ../shared/nab
EVAL_OUT ?= out/eval
eval:
	@mkdir -p $(EVAL_OUT)
	$(GO) run ./cmd/detector eval nab --data $(NAB_DATA) --out $(EVAL_OUT)/nab | tee $(EVAL_OUT)/nab.md
	$(GO) run ./cmd/detector eval scenarios --seed 1,2 --agents 200 --history-days 14 --test-days 7 --false-alerts $(EVAL_OUT)/false-alerts.jsonl | tee $(EVAL_OUT)/scenarios.md

clean:
	rm -rf bin dist .data/embedded
