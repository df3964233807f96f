# The two commands of a fresh clone: `make demo` and `make test`; `make test-e2e` is the test
# suite's second tier (README: The test suite). Everything else is `invoke`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-e2e bootstrap sandbox-tool
# Root installs system packages itself; anyone else through sudo.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

demo: bootstrap
	$(BIN)/invoke demo

test: bootstrap
	$(BIN)/invoke test

test-e2e: bootstrap
	$(BIN)/invoke test --tier e2e

bootstrap: $(STAMP) sandbox-tool

# bubblewrap: the sandbox a commit's training runs in (README: Security).
sandbox-tool:
	@command -v bwrap >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 || { echo "install bubblewrap (bwrap), the training sandbox, with this system's package manager"; exit 1; }; $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q bubblewrap; }

$(STAMP): requirements/uv.txt requirements/dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "onecommit needs Python 3.11+: run make with PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements/uv.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements/dev.txt -e .
	touch $@
