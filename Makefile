# secpref-guard: every target installs what it needs into .venv, made with Python 3.12 (the
# default Function Compute runtime, see template.yml) when the machine has it, otherwise the newest
# python3 of at least 3.10. `make test-py310` runs the suite on 3.10 (in .venv310).
SHELL := /bin/bash
# The first interpreter of the given version: on PATH, then under pyenv (CI has pyenv versions).
find_python = $(firstword $(foreach p,python$(1) $(wildcard /root/.pyenv/versions/$(1).*/bin/python$(1)) \
	$(wildcard $(HOME)/.pyenv/versions/$(1).*/bin/python$(1)),$(shell $(p) -c \
	'import sys; assert sys.version_info[:2] == tuple(map(int, "$(1)".split(".")))' \
	>/dev/null 2>&1 && echo $(p))))
ifndef PYTHON
PYTHON := $(or $(call find_python,3.12),$(shell for p in python3 python3.13 python3.11 python3.10; do \
	$$p -c 'import sys; assert sys.version_info >= (3, 10)' >/dev/null 2>&1 && { echo $$p; break; }; done))
endif
PY310 = $(call find_python,3.10)
# The Function Compute runtime `make build` targets: python3.12 (template.yml's vars.runtime) or
# python3.10. The build compiles byte-code with that very interpreter, so it must be on this machine.
FC_RUNTIME ?= $(shell sed -n 's/^  runtime: *\([a-z0-9.]*\).*/\1/p' template.yml)
FC_VERSION := $(patsubst python%,%,$(FC_RUNTIME))
ifndef FC_PYTHON
FC_PYTHON := $(call find_python,$(FC_VERSION))
endif
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
DEMO_PORT ?= 8765
# The Serverless Devs CLI, for the template tests (`s preview` renders template.yml offline).
S_VERSION := 3.1.10
S_BIN := build/tools/node_modules/.bin/s

.PHONY: venv tools test test-py310 lint demo bench build clean

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

# The same suite on Python 3.10, for users who cannot move yet (its own venv, .venv310).
test-py310:
	@test -n "$(PY310)" || { echo "make test-py310: no python3.10 interpreter on this machine \
	(pyenv install 3.10)" >&2; exit 1; }
	$(MAKE) --no-print-directory test PYTHON=$(PY310) VENV=.venv310

# The guard end to end against the local emulator: drift appears, is shown, reverted, verified.
demo: venv
	@set -euo pipefail; \
	export GUARD_IMS_ENDPOINT=http://127.0.0.1:$(DEMO_PORT); \
	export ALIBABA_CLOUD_ACCESS_KEY_ID=test-key-id ALIBABA_CLOUD_ACCESS_KEY_SECRET=test-key-secret; \
	export BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS=false BASELINE_ENABLE_SAVE_MFA_TICKET=false; \
	export BASELINE_MFA_OPERATION_FOR_LOGIN=mandatory BASELINE_LOGIN_SESSION_DURATION=4; \
	export BASELINE_LOGIN_NETWORK_MASKS="10.0.0.0/8;192.168.0.0/16"; \
	export BASELINE_PASSWORD_MINIMUM_LENGTH=14 BASELINE_PASSWORD_REQUIRE_SYMBOLS=true; \
	export BASELINE_PASSWORD_MAX_LOGIN_ATTEMPTS=5; \
	unset GUARD_MODE GUARD_PRESET; \
	echo "== starting the IMS emulator; someone has loosened the account's security preference"; \
	echo "   and password policy (its minimum length of 20 is stricter than the baseline's 14)"; \
	log=$$(mktemp); \
	$(BIN)/secpref-guard emulator --port $(DEMO_PORT) \
		--set AllowUserToManageAccessKeys=true --set EnableSaveMFATicket=true \
		--set LoginNetworkMasks="192.168.0.0/16" --set LoginSessionDuration=24 \
		--set MinimumPasswordLength=20 --set MaxLoginAttemps=0 > $$log 2>&1 & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null || true; rm -f $$log' EXIT; \
	for _ in $$(seq 100); do grep -q serving $$log && break; kill -0 $$pid 2>/dev/null || break; sleep 0.1; done; \
	grep -q serving $$log || { sed "s/pass another --port/run make demo DEMO_PORT=<another port>/" $$log >&2; \
		test -s $$log || echo "the emulator did not start" >&2; exit 1; }; cat $$log; \
	echo; echo "== secpref-guard check   (exit 2: drift)"; \
	$(BIN)/secpref-guard check && exit 1 || test $$? -eq 2; \
	echo; echo "== secpref-guard enforce (writes the complete desired state, then re-reads)"; \
	$(BIN)/secpref-guard enforce; \
	echo; echo "== secpref-guard check   (exit 0: compliant)"; \
	$(BIN)/secpref-guard check; \
	echo; echo "== the stricter minimum length was left alone (secpref-guard report, CSV)"; \
	$(BIN)/secpref-guard report | sed -n '1p;/MinimumPasswordLength/p'; \
	echo; echo "demo finished: drift in both settings found, reverted and verified;" \
		"a stricter field left as it was"

# The deployable code directory for template.yml (CODE, build/code by default): handler files at
# its root, the library, and the pinned dependencies built for Function Compute's platform whatever
# machine builds it, for FC_RUNTIME (template.yml's vars.runtime unless given). Then what runs fast:
# - byte-code compiled by the runtime's own interpreter, unchecked-hash (FC's code directory is
#   read-only: an instance could never cache what it compiles, and would compile on every start);
# - nothing the runtime does not need: console scripts (this machine's shebang), test suites and
#   self-tests, dist-info (nothing on the guard's paths reads it; pydantic's plugin scan finds no
#   plugin either way, faster), and the pycryptodome modules nothing imports
#   (shared/buildtools/prune_build.py; oss2 needs AES and RSA). cryptography stays: the FC 3.0 SDK of the
#   fan-out imports it (client.py keeps the IMS SDK's RSA signer, its other importer, unloaded),
#   with the compiled _cffi_backend it needs, but not cffi's Python half nor pycparser: with
#   them pycryptodome (imported by oss2 on every budget run) parses C declarations at import
#   (~15 ms); without, it uses ctypes, its documented fallback. Nor type stubs and Cython or C
#   sources, which nothing reads at run time;
# - compiled extensions without their symbol tables and debug sections (GNU strip
#   --strip-unneeded: what the dynamic loader needs stays): the extensions 32.6 -> 19.4 MB, the
#   directory 55 -> 42 MB.
# tests/test_build.py runs every handler and feature path from the result. $(CODE).runtime names
# the runtime and its interpreter.
CODE ?= build/code
STRIP ?= strip
build: venv
	@test -n "$(FC_VERSION)" || { echo "make build: no runtime: set vars.runtime in template.yml or FC_RUNTIME" >&2; exit 1; }
	@test -n "$(FC_PYTHON)" || { echo "make build: no python$(FC_VERSION) interpreter on this machine \
	(FC_RUNTIME=$(FC_RUNTIME)); the build compiles with it. Install it (pyenv install $(FC_VERSION)), \
	pass FC_PYTHON=/path/to/python$(FC_VERSION), or build for python3.10 with FC_RUNTIME=python3.10" >&2; exit 1; }
	@$(STRIP) --version 2>/dev/null | grep -q "^GNU strip" || { echo "make build: no GNU strip on this machine \
	(install binutils, or pass STRIP=/path/to/gnu/strip)" >&2; exit 1; }
	rm -rf $(CODE) && mkdir -p $(CODE)
	grep -v 'source-only' functions/requirements.txt > build/requirements-binary.txt
	grep 'source-only' functions/requirements.txt | sed 's/ *#.*//' > build/requirements-source.txt
	$(BIN)/python -m pip install --quiet --no-compile --target $(CODE) \
		--platform manylinux2014_x86_64 --implementation cp --python-version $(FC_VERSION) \
		--only-binary=:all: --no-deps -r build/requirements-binary.txt
	CC=/bin/false $(BIN)/python -m pip install --quiet --no-compile --target $(CODE) \
		--no-deps --no-binary :all: --no-cache-dir -r build/requirements-source.txt
	cp -r shared/secpref_guard $(CODE)/secpref_guard
	rm -rf $(CODE)/secpref_guard/emulator  # test tooling, not deployed
	cp functions/*.py $(CODE)/
	find $(CODE) -name __pycache__ -prune -exec rm -rf {} +
	rm -rf $(CODE)/bin $(CODE)/*.dist-info $(CODE)/Crypto/SelfTest $(CODE)/cffi $(CODE)/pycparser
	find $(CODE) -mindepth 2 -type d -name tests -prune -exec rm -rf {} +
	find $(CODE) -type f \( -name '*.pyi' -o -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' \
		-o -name '*.c' -o -name '*.h' \) -delete
	find $(CODE) -type f \( -name '*.so' -o -name '*.so.*' \) -exec $(STRIP) --strip-unneeded {} +
	$(FC_PYTHON) -I shared/buildtools/prune_build.py $(CODE) Crypto
	$(FC_PYTHON) -I -W ignore::SyntaxWarning -m compileall -q -j 0 \
		--invalidation-mode unchecked-hash $(CODE)
	@echo "$(FC_RUNTIME) $(FC_PYTHON)" > $(CODE).runtime
	@echo "$(CODE) is ready for $(FC_RUNTIME): $$(du -s --apparent-size --block-size=1M $(CODE) | cut -f1) MB"

# The benchmark builds what it measures: the code for template.yml's runtime and, where the
# machine has python3.10, the same for that runtime.
bench: venv
	$(MAKE) --no-print-directory build
	$(if $(PY310),$(MAKE) --no-print-directory build FC_RUNTIME=python3.10 CODE=build/code-python3.10)
	$(BIN)/python tests/bench/run.py --code build/code $(if $(PY310),--code build/code-python3.10)

clean:
	rm -rf $(VENV) .venv310 build .pytest_cache .ruff_cache
