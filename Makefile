# Hotline developer tasks. Run as root on a fresh Debian/Ubuntu machine: `make setup` installs
# whatever is missing (system packages, the virtualenv); every target is idempotent.
#   make run    the whole system with a demo hotline (private Postgres + Asterisk)
#   make test   what CI runs: lint + the whole suite on Asterisk 22, the PBX tests on the system's 16
#   make suite  lint + the whole test suite on one Asterisk (ASTERISK=22 or the system's)
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
BIN := $(VENV)/bin
RUN_DIR ?= .run
# Extra pytest arguments, e.g. `make suite PYTEST_ARGS='-k panel -x'`.
PYTEST_ARGS ?=
# A specific interpreter for the venv (default: python3 on PATH, >= 3.11).
PYTHON ?=
export PYTHON

# Which Asterisk the tests, `make run` and `make bench` use: empty = the distribution's (on
# Debian 12: 16 from Debian 11); 22 = Debian unstable's Asterisk 22 LTS, backported and built
# once per machine by scripts/build-asterisk22.sh into $(AST22_CACHE) and run from there
# (HOTLINE_ASTERISK), so the system's Asterisk stays installed: `make suite ASTERISK=22`.
ASTERISK ?=
AST22_CACHE ?= /var/cache/hotline/asterisk-22
export HOTLINE_AST22_CACHE := $(AST22_CACHE)
ifeq ($(ASTERISK),22)
export HOTLINE_ASTERISK := $(AST22_CACHE)/root/usr/sbin/asterisk
# tests/e2e/test_pbx_harness.py checks that this major version is the one running.
export HOTLINE_EXPECT_ASTERISK := 22
else ifneq ($(ASTERISK),)
$(error ASTERISK=$(ASTERISK): known are 22 and empty (the distribution's))
endif

# Every lint step runs even when an earlier one fails; $$status remembers any failure.
LINT = echo "== ruff check"; $(BIN)/ruff check . || status=1; \
	echo "== ruff format --check"; $(BIN)/ruff format --check . || status=1; \
	echo "== mypy"; $(BIN)/mypy || status=1

.PHONY: help setup system-deps venv prompts asterisk22 lint suite test-pbx test run clean

help:
	@echo "make run     start Postgres, Asterisk and hotline with a demo hotline (Ctrl-C stops)"
	@echo "make run-cluster  Kamailio + two Asterisk nodes with an app each, one Postgres"
	@echo "make test    what CI runs: make suite ASTERISK=22, then make test-pbx (16)"
	@echo "make suite   lint (ruff, mypy) and the whole test suite on one Asterisk"
	@echo "make test-pbx  the e2e tests that exercise the PBX most (calls, agents, reliability)"
	@echo "make setup   install system packages and the venv ($(VENV)); run by the ones above"
	@echo "             ASTERISK=22 (any target): build/use Asterisk 22 next to the system's"
	@echo "make lint    ruff check, ruff format --check, mypy"
	@echo "make clean   remove $(RUN_DIR)/ and the venv's install stamp"
	@echo "make bench   load benchmark: the app's hotline vs app_queue (about 8 min)"
	@echo "             BENCH_ARGS=--cluster: the cluster's per-call costs and N-node capacity"

setup: system-deps venv prompts $(if $(ASTERISK),asterisk$(ASTERISK))

# Builds Asterisk 22 when its cache has none (long: see the script), then unpacks it there.
asterisk22: system-deps
	@scripts/build-asterisk22.sh >/dev/null

system-deps:
	@scripts/install-system-deps.sh

venv: system-deps
	@scripts/ensure-venv.sh "$(VENV)"

# Prompts Debian's German set lacks, synthesised into Asterisk's sounds directory (only
# missing files are written: an admin's own recordings stay), then every prompt checked.
SOUNDS_DIR ?= /usr/share/asterisk/sounds
prompts: venv
	@$(BIN)/hotline prompts generate --sounds-dir "$(SOUNDS_DIR)"
	@$(BIN)/hotline prompts check --sounds-dir "$(SOUNDS_DIR)" >/dev/null

lint: setup
	@status=0; $(LINT); exit $$status

# Lint first so pytest's summary is the last thing printed; both always run.
suite: setup
	@status=0; $(LINT); \
	echo "== pytest"; $(BIN)/pytest -ra $(PYTEST_ARGS) || status=1; \
	exit $$status

# The e2e tests that exercise the PBX most: calls and strategies, agents (feature codes,
# handover, presence, service line, voicemail), reliability (crash, restart, lost link).
PBX_TESTS = $(addprefix tests/e2e/,test_pbx_harness.py test_hotline_calls.py \
	test_feature_codes.py test_handover.py test_voicemail_retrieval.py test_crash_recovery.py \
	test_blackhole.py test_fallback.py test_service_line.py test_presence.py)
test-pbx: setup
	$(BIN)/pytest -ra $(PBX_TESTS) $(PYTEST_ARGS)

# The README's test command and what CI runs (.ci/run): lint and the whole suite on Asterisk 22 (built once per machine:
# about 8 to 40 min on 2 cores when its cache is empty), then the PBX tests on the
# distribution's Asterisk (16 on Debian 12), whatever ASTERISK or HOTLINE_ASTERISK say.
# Both always run; any failure fails the target.
test:
	@status=0; \
	$(MAKE) --no-print-directory suite ASTERISK=22 || status=1; \
	echo "== the PBX tests on the distribution's Asterisk"; \
	env -u HOTLINE_ASTERISK -u HOTLINE_EXPECT_ASTERISK \
		$(MAKE) --no-print-directory test-pbx ASTERISK= || status=1; \
	exit $$status

run: setup
	$(BIN)/python -m devenv.run

clean:
	@scripts/clean.sh "$(RUN_DIR)" "$(VENV)"

# Load benchmark (benchmarks/run.py): the app's hotline against Asterisk's app_queue on one
# private PBX. Extra arguments: `make bench BENCH_ARGS=--smoke`; output in benchmarks/results/.
# `BENCH_ARGS=--cluster` (plus its options) runs benchmarks/cluster.py instead: the cluster
# of `make run-cluster`, per-call cost of each component, capacity projection for N nodes.
BENCH_ARGS ?=
.PHONY: bench
bench: setup
	$(BIN)/python -m $(if $(filter --cluster,$(BENCH_ARGS)),benchmarks.cluster,benchmarks.run) \
		$(filter-out --cluster,$(BENCH_ARGS))

# CLUSTER_NODES Asterisk nodes (default 2) behind Kamailio, one `hotline serve` each, one
# Postgres, the demo hotline with CLUSTER_AGENTS agents (default 5); Ctrl-C stops everything.
.PHONY: run-cluster
run-cluster: setup
	$(BIN)/python -m devenv.cluster
