# nepbench: `make demo` runs the main job on the embedded default model; `make test` runs the tests.
# Both set themselves up on a fresh machine: a .venv with pinned dependencies, and Debian's cp2k.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.nepbench-installed
PYTEST_ARGS ?=

.PHONY: setup cp2k chromium model test demo reference gate bench nightly clean

$(STAMP): requirements.txt requirements-train.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt -r requirements-train.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

cp2k:
	@./scripts/ensure_cp2k.sh || true

chromium:
	@./scripts/ensure_chromium.sh || true

setup: $(STAMP) cp2k

test: setup chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: setup
	$(BIN)/nepbench run suites/quick.toml --out reports/quick

# Grow the CP2K reference set (labels, then AIMD segments); resumable, long: run it in the background.
reference: setup
	./scripts/reference_background.sh

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
