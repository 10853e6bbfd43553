# htcpool: every package the project needs is installed from here (apt and pip), so
# `make test` and `make demo` work on a fresh Debian machine as root.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
APT_PACKAGES := python3 python3-venv python3-pip debootstrap systemd-container iproute2 \
	openssh-client gnupg apt-utils dpkg-dev curl ca-certificates rsync tmux git make
STAMP := $(VENV)/.htcpool-deps-$(shell cat pyproject.toml requirements.yml 2>/dev/null | sha256sum | cut -c1-12)
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

$(STAMP): pyproject.toml
	$(MAKE) apt-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/ansible-galaxy collection list amazon.aws >/dev/null 2>&1 || \
	  $(BIN)/ansible-galaxy collection install -r requirements.yml
	rm -f $(VENV)/.htcpool-deps-*; touch $@

deps: apt-deps $(STAMP)

lint: deps
	$(BIN)/ruff check orchestrator tests bench
	$(BIN)/mypy
	cd roles/.. && PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/ansible-lint --profile production playbooks roles

test: deps lint
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest -ra --durations=30 $(PYTEST_ARGS)

unit: deps
	$(BIN)/pytest -ra tests/unit $(PYTEST_ARGS)

demo: deps
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m orchestrator.demo $(if $(filter 1 yes true,$(KEEP)),--keep,)

bench: deps
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m bench.run_all

sandbox-down:
	-$(BIN)/htcpool sandbox down

clean: sandbox-down
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
