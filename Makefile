# finops-agent. `make demo` and `make test` work on a fresh machine: they install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VENV_STAMP := $(VENV)/.installed
CARGO ?= cargo

.PHONY: all demo test lint lint-clippy build bench chaos mutants clean venv browser cdk-test package package-check

all: build

# moto (the local AWS) in a virtualenv, reinstalled when its requirements change.
$(VENV_STAMP): tests/moto/requirements.txt
	@echo "finops: installing moto (the emulated AWS) into $(VENV) from PyPI"
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

# The first screen says what is happening: a cold build is most of a first `make demo` (5 to 6 minutes on 2 cores).
# `make demo ACCOUNTS=3`: an AWS Organization on moto (the hub and 2 members, each region scanned by the Distributed
# Map, approvals routed to two approver groups, a report per account).
ACCOUNTS ?= 1

demo:
	@if [ ! -x target/debug/finops-demo ]; then \
		echo "finops demo: compiling the demo and what it runs (the steps, the local runner, moto's adapter) while moto"; \
		echo "             installs; a first build takes about 5 to 6 minutes on 2 cores, later ones seconds. Progress below."; \
	fi
	@# moto's install (about 30 s of CPU, mostly compiling Python) beside the build, not before it; only the demo's
	@# own binary: the Lambdas' bootstraps and the other tools wait for `make test` (same features, nothing twice).
	@$(MAKE) --no-print-directory venv & venv=$$!; \
		$(CARGO) build -p finops-demo; built=$$?; \
		wait $$venv && [ $$built -eq 0 ]
	@echo "finops demo: built; running the whole workflow on emulated AWS (moto on 127.0.0.1)"
	./target/debug/finops-demo --accounts $(ACCOUNTS) $(DEMO_ARGS)

# asl-validator (npm) for the state machine definition.
statemachine/node_modules/.package-lock.json: statemachine/package-lock.json
	npm ci --prefix statemachine --no-audit --no-fund --silent

# The CDK app: npm ci, type check, template tests with cdk-nag, offline synth, cfn-lint.
cdk/node_modules/.package-lock.json: cdk/package-lock.json
	npm ci --prefix cdk --no-audit --no-fund --silent

cdk-test: venv cdk/node_modules/.package-lock.json
	cd cdk && npx tsc --noEmit && npm test --silent
	cd cdk && npx cdk synth -c assetsDir=test/fixtures/lambda -c approvers=ops@example.com --quiet -o cdk.out
	# W3005: the CDK adds DependsOn on a role that a GetAtt already implies; harmless and not ours to change.
	$(VENV)/bin/cfn-lint --ignore-checks W3005 -- cdk/cdk.out/FinopsAgent.template.json
	# An organization deployment with approvals routed by OU: the hub's template and the member-roles template its
	# StackSet carries.
	cd cdk && npx cdk synth -c assetsDir=test/fixtures/lambda -c approvers=ops@example.com -c accounts=organization -c organizationOus=ou-ab12-workload1 \
	  -c 'approvalRouting={"routes":[{"ou":"ou-ab12-workload1","approvers":["workloads@example.com"]}]}' --quiet -o cdk.out.org
	$(VENV)/bin/cfn-lint --ignore-checks W3005 -- cdk/cdk.out.org/FinopsAgent.template.json
	$(VENV)/bin/python tests/cdk/member_template.py cdk/cdk.out.org/FinopsAgent.template.json > cdk/cdk.out.org/member-roles.json
	$(VENV)/bin/cfn-lint -- cdk/cdk.out.org/member-roles.json

# Release builds of every Lambda for `cdk deploy`: Graviton (arm64, about 20 % cheaper per GB-second) unless
# ARCH=x86_64, cross-compiled by cargo-lambda with Zig as the linker (both from PyPI; 11-13 min cold on 2 cores). The
# CDK app deploys what was built (it reads the bootstraps' ELF headers). Then every bootstrap is checked.
ARCH ?= arm64
LAMBDAS := inventory metrics reasoning policy request-approval approval-callback actions agent-tools run-cost savings plan-scans scan-account merge-scans
package: venv
	$(VENV)/bin/pip install --quiet --disable-pip-version-check cargo-lambda ziglang
	@case "$(ARCH)" in \
		arm64) target=aarch64-unknown-linux-gnu ;; \
		x86_64) target=x86_64-unknown-linux-gnu ;; \
		*) echo "make package: ARCH=$(ARCH) is not arm64 or x86_64" >&2; exit 2 ;; \
	esac; \
	rustup target list --installed | grep -qx "$$target" || rustup target add "$$target"
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(CARGO) lambda build --release $(if $(filter x86_64,$(ARCH)),--x86-64,--arm64) \
		$(foreach f,$(LAMBDAS),--bin finops-$(f))
	$(MAKE) --no-print-directory package-check

# Each bootstrap: built for ARCH, its size (at most 10 MB), and started far enough to ask a local Lambda Runtime API
# for an event (under qemu-user, Debian's, when ARCH is not this machine's) and to fail cleanly without one.
package-check: venv
	@if [ "$(ARCH)" = arm64 ] && [ "$$(uname -m)" != aarch64 ] && { ! command -v qemu-aarch64 >/dev/null || [ ! -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ]; }; then \
		echo "installing qemu-user and the arm64 C library (Debian packages) to run arm64 bootstraps here"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user libc6-arm64-cross libgcc-s1-arm64-cross >/dev/null; \
	fi
	$(VENV)/bin/python tests/lambda/bootstraps.py --arch $(ARCH) --dir target/lambda --max-mb 10

test: venv browser statemachine/node_modules/.package-lock.json cdk-test
	node statemachine/validate.mjs statemachine/finops.asl.json
	$(VENV)/bin/python tests/check_openapi.py openapi-schema.yaml
	$(VENV)/bin/python tests/moto/instance_storage_families.py --check cdk/lib/instance-storage-families.json
	$(PYTHON) tests/check_capabilities.py
	# Every Rust test: one build of every test binary, then the binaries a few at a time (tests/run_tests.py: most
	# wait on moto, so running them one after another, as `cargo test` does, leaves a core idle).
	CARGO=$(CARGO) $(PYTHON) tests/run_tests.py
	$(CARGO) test --workspace --doc --quiet

# Clippy checks in its own target dir: it builds nothing that `cargo build` can use (check-mode metadata), and so CI
# can run it beside the build and the tests without either waiting on the other's lock.
CLIPPY_TARGET_DIR ?= target/lint
lint-clippy:
	$(CARGO) clippy --workspace --all-targets --target-dir $(CLIPPY_TARGET_DIR) -- -D warnings

lint: cdk/node_modules/.package-lock.json lint-clippy
	$(CARGO) fmt --all -- --check
	$(PYTHON) tests/check_capabilities.py
	cd cdk && npx tsc --noEmit

bench:
	$(CARGO) run --release -q -p finops-bench
	$(CARGO) run --release -q -p finops-bench -- organization

# Complete workflows on one moto under randomized faults, each checked against the safety invariants
# (functions/chaos). CHAOS_RUNS=1000 for the long run; CHAOS_SEED=<seed> CHAOS_RUNS=1 replays one run. The fuzz tests
# of every parser of untrusted input run first, with FUZZ_CASES cases each (make test runs 2,000).
CHAOS_RUNS ?= 50
FUZZ_CASES ?= 50000
chaos: venv
	FINOPS_FUZZ_CASES=$(FUZZ_CASES) $(CARGO) test -q --workspace --lib fuzz
	@# The whole workspace, as `make demo` builds it (and with the features `make test` resolves): nothing compiles twice.
	$(CARGO) build -q --workspace
	CHAOS_RUNS=$(CHAOS_RUNS) ./target/debug/finops-chaos

# Mutation testing of the safety half (.cargo/mutants.toml): caught / missed / timeout per file. Hours on 2 cores,
# so not in CI; MUTANTS_FILES="<path> ..." for some files only.
mutants: venv
	tests/mutants/run.sh

clean:
	$(CARGO) clean
	rm -rf $(VENV)
