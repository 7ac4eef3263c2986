# Two commands for a fresh Debian machine (run as root, or with sudo available):
#   make demo   installs what is needed, brings up the lab, offboards the lab client, shows the result
#   make test   installs what is needed and runs the whole test suite (lint, unit, integration, molecule)
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
# Playbooks and molecule read the project's wiring, wherever they are started from.
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := docker.io mmdebstrap openssh-server age bind9-utils chromium poppler-utils openssh-client

.PHONY: demo test system venv lab lab-down lint syntax unit integration molecule clean

## demo: install, bring up the lab, offboard its agents (rehearsal first), show status
demo: system venv lab
	@echo "== Rehearsal (check mode): what would be removed, nothing changes"
	offboard run lab --tags agents --check || [ $$? -eq 75 ]
	@echo "== Offboarding the lab client's agents for real"
	offboard run lab --tags agents || [ $$? -eq 75 ]
	@echo "== Ledger: what is done, what is pending (the laptop in the drawer is offline)"
	offboard status lab || [ $$? -eq 75 ]
	offboard verify lab

## test: install, then lint + unit + integration + molecule (each stage timed)
test: system venv
	@for stage in lint unit integration molecule; do \
	  start=$$(date +%s); echo "== make $$stage"; \
	  $(MAKE) --no-print-directory $$stage; \
	  echo "== make $$stage: $$(( $$(date +%s) - start ))s"; done
	@echo "== make test: all checks passed"

## system: Debian packages and a running docker daemon (bridge off: lab traffic stays on loopback)
system:
	@missing=""; for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "== installing:$$missing"; \
	  $(SUDO) apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

## venv: the project and its test tools in .venv (rebuilt when pyproject.toml changes)
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

## lab: build the image if needed, start docker if needed, create and plant the lab
lab: system venv
	offboard lab up

lab-down: venv
	offboard lab down

## lint: yamllint, ansible-lint (production profile), syntax check of every playbook, ruff
lint: venv
	yamllint -s .
	ansible-lint --offline --nocolor -q
	for pb in offboard.yml playbooks/*.yml playbooks/lab/*.yml; do \
	  case $$pb in playbooks/lab/footprints.yml) continue;; esac; \
	  ansible-playbook --syntax-check -i inventories "$$pb" >/dev/null; echo "syntax ok: $$pb"; done
	ruff check .
	ruff format --check .
	pytest -q -p no:cacheprovider tests/unit/test_powershell_parse.py

unit: venv
	pytest -q tests/unit

## integration: real playbooks and the wrapper against the lab (the fixtures bring the lab up)
integration: system venv
	pytest -v --durations=15 tests/integration

## molecule: every role scenario runnable here (Windows scenarios need a real host: see the role READMEs)
molecule: system venv
	$(BIN)/python -c 'from offboard.lab import ensure_docker, ensure_image; ensure_docker(); ensure_image()'
	$(BIN)/python -c 'from offboard.lab_dc import ensure_dc_image; ensure_dc_image()'
	for scenario in $$(ls molecule); do \
	  case $$scenario in *_windows) echo "molecule: $$scenario needs a Windows host, not run here"; continue;; esac; \
	  molecule test -s $$scenario; done

clean: lab-down
	rm -rf $(VENV) .pytest_cache .ruff_cache
