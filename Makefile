# finops-agent. `make demo` and `make test` work on a fresh machine: they install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VENV_STAMP := $(VENV)/.installed
CARGO ?= cargo

.PHONY: all demo test lint build bench clean venv browser

all: build

# moto (the local AWS) in a virtualenv, reinstalled when its requirements change.
$(VENV_STAMP): tests/moto/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/moto/requirements.txt
	touch $@

venv: $(VENV_STAMP)

# Debian's Chromium and ChromeDriver for the browser test (no browser download; needs root, as CI has).
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		echo "installing chromium and chromium-driver (Debian packages)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi

# One build of the whole workspace: tests and binaries share it (same feature set everywhere).
build:
	$(CARGO) build --workspace

demo: venv build
	./target/debug/finops-demo $(DEMO_ARGS)

# asl-validator (npm) for the state machine definition.
statemachine/node_modules/.package-lock.json: statemachine/package-lock.json
	npm ci --prefix statemachine --no-audit --no-fund --silent

test: venv browser statemachine/node_modules/.package-lock.json
	node statemachine/validate.mjs statemachine/finops.asl.json
	$(VENV)/bin/python tests/check_openapi.py openapi-schema.yaml
	$(CARGO) test --workspace --no-fail-fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench:
	$(CARGO) run --release -q -p finops-bench

clean:
	$(CARGO) clean
	rm -rf $(VENV)
