# htcpool: every package the project needs is installed from here (apt and pip), so
# `make test` and `make demo` work on a fresh Debian machine as root.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
APT_PACKAGES := python3 python3-venv python3-pip debootstrap systemd-container iproute2 \
	openssh-client gnupg apt-utils dpkg-dev curl ca-certificates rsync tmux git make nftables
STAMP := $(VENV)/.htcpool-deps-$(shell cat pyproject.toml requirements/*.txt requirements.yml 2>/dev/null | sha256sum | cut -c1-12)
PYTEST_ARGS ?=
KEEP ?= 0

.PHONY: all deps apt-deps test lint unit integration e2e demo bench clean sandbox-down

all: test

apt-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "==> apt-get install$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml $(wildcard requirements/*.txt)
	$(MAKE) apt-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/ansible-galaxy collection list amazon.aws >/dev/null 2>&1 || \
	  $(BIN)/ansible-galaxy collection install -r requirements.yml
	rm -f $(VENV)/.htcpool-deps-*; touch $@

deps: apt-deps $(STAMP)

lint: deps
	$(BIN)/ruff check orchestrator tests bench scripts
	$(BIN)/mypy
	$(BIN)/mypy scripts
	cd roles/.. && PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/ansible-lint --profile production playbooks roles
	$(BIN)/python scripts/role_docs.py --check
	$(BIN)/python scripts/iam_lint.py

test: deps lint
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest -ra --durations=30 $(PYTEST_ARGS)

unit: deps
	$(BIN)/pytest -ra tests/unit $(PYTEST_ARGS)

demo: deps
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m orchestrator.demo $(if $(filter 1 yes true,$(KEEP)),--keep,)

# Each benchmark rewrites its own section of bench/RESULTS.md, with the command recorded
# there. All of them take hours (the fault soak alone about one): pick some with
# `make bench BENCHES="sim_traces sim_limits"`. The sandbox ones need root.
BENCHES ?= sim_traces sim_limits reconcile_bench bad_input_bench sandbox_bench ansible_bench \
	pool_views fault_soak demo_bench security_attacks
bench_args_sandbox_bench := --cold --repeat 3
bench_args_reconcile_bench := --jobs 10000 --instances 1000 --passes 15
bench_args_bad_input_bench := --examples 300
bench_args_pool_views := --repeat 5
bench_args_fault_soak := --runs 30 --seed 1

bench: deps
	@set -e; $(foreach b,$(BENCHES),\
	  echo "==> python -m bench.$(b) $(bench_args_$(b))"; \
	  PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m bench.$(b) $(bench_args_$(b));)

sandbox-down:
	-$(BIN)/htcpool sandbox down

clean: sandbox-down
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
