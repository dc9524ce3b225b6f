# secpref-guard: every target installs what it needs into .venv (Python 3.10, the FC runtime's
# version, when the machine has it; otherwise the newest python3).
SHELL := /bin/bash
PYTHON ?= $(shell for p in python3.10 /root/.pyenv/versions/3.10*/bin/python3.10 python3; do \
	$$p -c 'import sys; assert sys.version_info >= (3, 10)' >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
DEMO_PORT ?= 8765
# The Serverless Devs CLI, for the template tests (`s preview` renders template.yml offline).
S_VERSION := 3.1.10
S_BIN := build/tools/node_modules/.bin/s

.PHONY: venv tools test lint demo bench build clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "no Python 3.10+ found" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@rm -f $(VENV)/.installed-* && touch $@

lint: venv
	$(BIN)/ruff check shared functions tests
	$(BIN)/ruff format --check shared functions tests

tools: $(S_BIN)

$(S_BIN):
	npm install --prefix build/tools --no-audit --no-fund --loglevel=error \
		@serverless-devs/s@$(S_VERSION)

test: venv lint tools
	$(BIN)/python -m pytest

# The guard end to end against the local emulator: drift appears, is shown, reverted, verified.
demo: venv
	@set -euo pipefail; \
	export GUARD_IMS_ENDPOINT=http://127.0.0.1:$(DEMO_PORT); \
	export ALIBABA_CLOUD_ACCESS_KEY_ID=test-key-id ALIBABA_CLOUD_ACCESS_KEY_SECRET=test-key-secret; \
	export BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS=false BASELINE_ENABLE_SAVE_MFA_TICKET=false; \
	export BASELINE_MFA_OPERATION_FOR_LOGIN=mandatory BASELINE_LOGIN_SESSION_DURATION=4; \
	export BASELINE_LOGIN_NETWORK_MASKS="10.0.0.0/8;192.168.0.0/16"; \
	unset GUARD_MODE GUARD_PRESET; \
	echo "== starting the IMS emulator; someone has loosened the account's security preference"; \
	log=$$(mktemp); \
	$(BIN)/secpref-guard emulator --port $(DEMO_PORT) \
		--set AllowUserToManageAccessKeys=true --set EnableSaveMFATicket=true \
		--set LoginNetworkMasks="192.168.0.0/16" --set LoginSessionDuration=24 > $$log 2>&1 & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null || true; rm -f $$log' EXIT; \
	for _ in $$(seq 100); do grep -q serving $$log && break; kill -0 $$pid || break; sleep 0.1; done; \
	cat $$log; grep -q serving $$log || { echo "the emulator did not start" >&2; exit 1; }; \
	echo; echo "== secpref-guard check   (exit 2: drift)"; \
	$(BIN)/secpref-guard check && exit 1 || test $$? -eq 2; \
	echo; echo "== secpref-guard enforce (writes the complete desired state, then re-reads)"; \
	$(BIN)/secpref-guard enforce; \
	echo; echo "== secpref-guard check   (exit 0: compliant)"; \
	$(BIN)/secpref-guard check; \
	echo; echo "demo finished: drift found, reverted and verified"

# The deployable code directory for template.yml: handler files at its root, the library, and the
# pinned dependencies built for Function Compute's platform whatever machine builds it.
build: venv
	rm -rf build/code && mkdir -p build/code
	grep -v 'source-only' functions/requirements.txt > build/requirements-binary.txt
	grep 'source-only' functions/requirements.txt | sed 's/ *#.*//' > build/requirements-source.txt
	$(BIN)/python -m pip install --quiet --no-compile --target build/code \
		--platform manylinux2014_x86_64 --implementation cp --python-version 3.10 \
		--only-binary=:all: --no-deps -r build/requirements-binary.txt
	CC=/bin/false $(BIN)/python -m pip install --quiet --no-compile --target build/code \
		--no-deps --no-binary :all: --no-cache-dir -r build/requirements-source.txt
	cp -r shared/secpref_guard build/code/secpref_guard
	rm -rf build/code/secpref_guard/emulator  # test tooling, not deployed
	cp functions/*.py build/code/
	find build/code -name __pycache__ -prune -exec rm -rf {} +
	@echo "build/code is ready: $$(du -sh build/code | cut -f1)"

bench: venv
	$(BIN)/python tests/bench/run.py

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache
