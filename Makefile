# nepbench: `make demo` runs the main job on the default model (fetched at first use); `make test` runs the tests.
# Both set themselves up on a fresh machine: a .venv with pinned dependencies, and Debian's cp2k.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.nepbench-installed
PYTEST_ARGS ?=
# TRAIN=0 leaves out the training dependencies (torch, neppo; `nepbench train` and its tests then
# skip with the reason): where pip finds no local CPU wheel, PyPI's torch is a CUDA build of several GB.
TRAIN ?= 1
TRAIN_REQUIREMENTS := $(if $(filter 1,$(TRAIN)),-r requirements-train.txt,)
# COMPARATORS=0 leaves out the universal-MLIP comparators (CHGNet, SevenNet on torch; their tasks and
# tests then skip with the reason; docs/comparators.md).
COMPARATORS ?= 1
COMPARATOR_REQUIREMENTS := $(if $(filter 1,$(COMPARATORS)),-r requirements-comparators.txt,)

.PHONY: setup cp2k chromium slurm model test demo comparators reference gate baseline bench nightly clean \
	gpumd device-kit

$(STAMP): requirements.txt requirements-train.txt requirements-comparators.txt pyproject.toml
	@test -x $(BIN)/python || PYTHON=$(PYTHON) ./scripts/ensure_python_build.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); exit 1; }
	@test -x $(BIN)/pip || { echo "nepbench: $(VENV) has no pip (a venv made without ensurepip); remove it and rerun"; exit 1; }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt $(TRAIN_REQUIREMENTS) $(COMPARATOR_REQUIREMENTS)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# Without CP2K its tests skip; under CI that would pass a run that never ran CP2K, so it fails there.
cp2k:
	@./scripts/ensure_cp2k.sh || [ "$$CI" != true ] || { echo "nepbench: CI=true and CP2K is not usable (above): stopping rather than skipping every CP2K test" >&2; exit 1; }

# The default model, fetched from its pinned PyPI package and checked by sha256 (cached: no download
# when it is there and verifies).
model: $(STAMP)
	@$(BIN)/nepbench models fetch nep89-lisic

chromium:
	@./scripts/ensure_chromium.sh || true

# The Slurm tests (tests/test_slurm.py) start a one-node Slurm of their own from Debian's slurm-wlm
# and munge (root only); elsewhere they skip, and under CI a skip would hide them, so it fails there.
slurm:
	@./scripts/ensure_slurm.sh || [ "$$CI" != true ] || { echo "nepbench: CI=true and Slurm is not usable (above): stopping rather than skipping the Slurm tests" >&2; exit 1; }

setup: $(STAMP) cp2k model

test: setup chromium slurm
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The comparators (CHGNet, SevenNet; `make comparators`) need ~45 min on 2 cores, beyond the demo's
# 15: the demo's second report merges the quick run with their recorded run, a local
# reports/comparators when there is one, else the run recorded on a machine like CI's and committed
# (each record names its host, date and wall time; docs/comparators.md).
COMPARATORS_RUN ?= $(if $(wildcard reports/comparators/suite.json),reports/comparators,reports/demo/comparators-2026-12-07)
demo: setup
	$(BIN)/nepbench run suites/quick.toml --out reports/quick
	@if [ -f $(COMPARATORS_RUN)/suite.json ]; then \
	  $(BIN)/nepbench report reports/quick $(COMPARATORS_RUN) --out reports/quick+comparators && \
	  echo "nepbench: the NEPs beside CHGNet and SevenNet ($(COMPARATORS_RUN)): reports/quick+comparators/report.html"; \
	else echo "nepbench: no comparators run at $(COMPARATORS_RUN) (make comparators); reports/quick only"; fi

# CHGNet and SevenNet on the quick suite's cells at reduced length (their own suite: at the quick
# suite's sizes they would take hours on 2 cores, ~40 min here; docs/comparators.md).
comparators: setup
	$(BIN)/nepbench run suites/comparators.toml --out reports/comparators

# Accuracy regression gate (docs/tracking.md): the CI-sized gate suite, then `nepbench gate` against
# the committed baseline (nepbench gate exits 1 on a regression; make then exits 2). --force: measured now, never reused from an
# earlier run in the folder. One OpenMP thread: on a busy 2-core machine spinning OpenMP workers
# slow NEP MD tenfold.
GATE_OUT ?= reports/gate
BASELINE ?= reports/baseline/results.json
GATE_ARGS ?=
DATA_MANIFESTS := reference_data/dft/manifest.json reference_data/aimd/manifest.json reference_data/aimd.toml
CHECK_DATA_COMMITTED = @if git status --porcelain -- $(DATA_MANIFESTS) 2>/dev/null | grep -q .; then \
	echo "make baseline: reference_data has uncommitted changes; commit the data first (the gate test runs on the committed data)"; exit 2; fi

gate: setup
	OMP_NUM_THREADS=1 $(BIN)/nepbench run suites/gate.toml --out $(GATE_OUT) --force
	$(BIN)/nepbench gate $(GATE_OUT) --baseline $(BASELINE) $(GATE_ARGS)

# Rebaseline after an intended change (new model, new or relabelled reference data); commit the
# data first, then commit reports/baseline/results.json with the change. Before it writes, the new
# run is gated against the old baseline on every task whose reference data did not change
# (--skip-data-changed): new AIMD frames do not let a parity regression into the baseline. An
# intended change that the check refuses (a model that trades accuracy for speed, a metric defined
# anew, new task parameters, every task's data changed at once): make baseline ACCEPT_REGRESSION=1.
ACCEPT_REGRESSION ?=
baseline: setup
	$(CHECK_DATA_COMMITTED)
	OMP_NUM_THREADS=1 $(BIN)/nepbench run suites/gate.toml --out reports/baseline-run --force
	$(CHECK_DATA_COMMITTED)
	@if [ -f $(BASELINE) ] && [ "$(ACCEPT_REGRESSION)" != 1 ]; then \
	  $(BIN)/nepbench gate reports/baseline-run --baseline $(BASELINE) --skip-data-changed || { \
	    echo "make baseline: the new run does not pass the gate against $(BASELINE) on the tasks whose data" \
	         "did not change (above); not rebaselined (ACCEPT_REGRESSION=1 if the change is intended)"; exit 1; }; fi
	$(BIN)/nepbench gate reports/baseline-run --update-baseline --baseline $(BASELINE)

# Speed: pytest-benchmark micro-benchmarks (JSON saved under .benchmarks/) and one quick asv pass
# over benchmarks/ in .venv as a smoke test (--dry-run: a one-sample result saved for HEAD would
# count as measured and the nightly would skip that commit).
bench: setup
	$(BIN)/python -m pytest tests/test_bench_nep.py --benchmark-enable --benchmark-autosave -q
	$(BIN)/asv machine --yes > /dev/null
	$(BIN)/asv run --quick --dry-run -E existing:$(BIN)/python

# Nightly tracking: asv on every new commit of main, results per machine, then the HTML site.
nightly: setup
	./scripts/nightly.sh

# Grow the CP2K reference set (labels, then AIMD segments); resumable, long: run it in the background.
reference: setup
	./scripts/reference_background.sh

# GPUMD built with NVIDIA's CUDA 13 wheels from PyPI (pins.toml [cuda13]) into third_party/, then
# checked without a GPU (ldd, cuobjdump, a clean exit): GPUMD_SRC=<GPUMD v5.6 source tree>; not in
# CI (~1.7 GB of wheels, minutes of nvcc). docs/gpumd.md.
GPUMD_SRC ?=
gpumd:
	GPUMD_SRC="$(GPUMD_SRC)" PYTHON=$(PYTHON) ./scripts/make_gpumd.sh

# The offline GPU check kit (dist/device-kit, <= 60 MiB): the binaries above, the cp312 wheels a bare
# GPU node lacks, the models, this tree, and run_gpu_check.sh (docs/gpumd.md).
device-kit: gpumd model
	GPUMD_SRC="$(GPUMD_SRC)" $(BIN)/python scripts/device_kit.py

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
