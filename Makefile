# Neutrino developer / CI entry points.  `make test` is what CI runs (via .ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

# pip may put uv in ~/.local/bin (non-root) or /usr/local/bin (root)
export PATH := $(HOME)/.local/bin:/usr/local/bin:$(PATH)

# uv uses its bundled Mozilla roots; use Debian's bundle (as pip does) so that a
# TLS-intercepting proxy whose CA is installed system-wide works too.
ifeq ($(origin SSL_CERT_FILE),undefined)
ifneq ($(wildcard /etc/ssl/certs/ca-certificates.crt),)
export SSL_CERT_FILE := /etc/ssl/certs/ca-certificates.crt
endif
endif

UV      ?= uv
PYTEST_WORKERS ?= 2
# bench/ may not exist yet
LINT_PATHS := src tests $(wildcard bench)

.PHONY: all deps lint test demo bench clean

all: test

## deps: Debian packages (PostgreSQL, Open vSwitch, net tools, ...), uv, and the venv
deps:
	bash scripts/install-deps.sh

## lint: ruff + mypy
lint: deps
	$(UV) run ruff check $(LINT_PATHS)
	$(UV) run mypy

## test: lint, then the whole test suite on $(PYTEST_WORKERS) xdist workers
test: deps lint
	$(UV) run pytest -q -n $(PYTEST_WORKERS) --dist loadscope

## demo: two projects on a 3-host lab, real ping/TCP, a summary table; `make demo ARGS=--keep` keeps the lab
demo: deps
	$(UV) run python -m neutrino.demo $(ARGS)

## bench: API benchmark, then the data-plane benchmark against OVN (root; installs ovn-central/ovn-host
## if missing; DATAPLANE_ARGS="--sizes 10x10" or "--quick" to shorten it), then the gateway failover
## benchmark (root; 5 kills of each kind, then 600 s idle for the BFD flap count), the fault
## notification benchmark and the attach-storm benchmark (50 hosts; server and agents restarted)
bench: deps
	rc=0; $(UV) run python bench/api.py || rc=$$?; \
	$(UV) run python bench/dataplane.py --install-ovn \
		--output "$${DATAPLANE_JSON:-/tmp/neutrino-bench-dataplane.json}" $${DATAPLANE_ARGS:-} || rc=$$?; \
	$(UV) run python bench/routing.py --install-ovn \
		--output "$${ROUTING_JSON:-/tmp/neutrino-bench-routing.json}" $${ROUTING_ARGS:-} || rc=$$?; \
	$(UV) run python bench/failover.py --idle 600 \
		--output "$${FAILOVER_JSON:-/tmp/neutrino-bench-failover.json}" || rc=$$?; \
	$(UV) run python bench/faults.py --output "$${FAULTS_JSON:-/tmp/neutrino-bench-faults.json}" $${FAULTS_ARGS:-} || rc=$$?; \
	$(UV) run python bench/storm.py --output "$${STORM_JSON:-/tmp/neutrino-bench-storm.json}" $${STORM_ARGS:-} || rc=$$?; \
	exit $$rc

## clean: caches and build artefacts (keeps .venv)
clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist
	find . -path ./.venv -prune -o -type d -name __pycache__ -prune -exec rm -rf {} + \
		-o -type d -name '*.egg-info' -prune -exec rm -rf {} +
