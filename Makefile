# Two entry points on a fresh machine (see README.md):  `make lab`  and  `make test`.
# Everything is installed into .venv by the project itself; nothing is assumed to be there.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.eelab-installed
# The CPU wheel of this version lies on the machine's disk. Installing torch FIRST matters: an unpinned
# torch pulled in by `pip install -e .` would be a multi-GB CUDA build. The package itself does not pin
# torch, so Colab keeps its own CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: lab test install check-sync nbtest pytest readme outputs pngs colab-cell lint clean-runs scale

$(STAMP): settings.ini setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev,hf]"
	touch $@

install: $(STAMP)

## The main job: experiments 001 and 002, reference and clean recipes, tables printed.
lab: $(STAMP)
	$(VENV)/bin/eelab-lab

## The scale model (issue 11): 8 layers, exits 2/4/6/8, trained jointly and two-phase on all of Shakespeare.
## About 12-14 minutes per recipe on 2 cores (measured: joint 817 s, clean 700 s); the benchmark's and
## the explorer's `scale` use these checkpoints.
scale: $(STAMP)
	$(PY) -m eelab.train --config scale --recipe joint --no-progress
	$(PY) -m eelab.train --config scale --recipe clean --no-progress

## Every test: library/notebooks/README in sync, ruff, every lesson notebook (nbdev_test), then pytest, which
## re-runs every experiment notebook by papermill (nbs/experiments/.notest keeps nbdev_test from running them twice).
test: $(STAMP) check-sync lint nbtest pytest

check-sync: $(STAMP)
	@before="$$(git status --porcelain)"; \
	$(VENV)/bin/nbdev_export && $(VENV)/bin/nbdev_clean && $(PY) tools/build_readme.py; \
	after="$$(git status --porcelain)"; \
	if [ "$$before" != "$$after" ]; then \
	  echo "FAIL: nbdev_export / nbdev_clean / tools/build_readme.py changed files: edit the notebooks, export, clean, rebuild README, commit."; \
	  git status --porcelain; git --no-pager diff --stat; exit 1; fi; \
	echo "sync: library, notebooks and README.md are up to date"

nbtest: $(STAMP)
	# one thread per notebook: nbdev_test runs two notebooks at once on two cores, and OpenMP threads would fight
	OMP_NUM_THREADS=1 $(VENV)/bin/nbdev_test --timing

# Two workers (pytest-xdist), one test file each at a time; one OpenMP thread each, as in nbtest: two cores.
PYTEST_WORKERS ?= 2
pytest: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest tests -q -ra --durations=15 -n $(PYTEST_WORKERS) --dist loadfile

readme: $(STAMP)
	$(PY) tools/build_readme.py

## The executed outputs a reader on GitHub needs (deterministic: timings masked, ids renumbered), then README.md:
## index, every lesson, every experiment (smoke runs: the default outside eelab-lab; about 7 minutes for the eight).
OUTPUT_NOTEBOOKS ?= index.ipynb $(sort $(wildcard nbs/[0-9]*.ipynb)) $(sort $(wildcard nbs/experiments/[0-9]*.ipynb))
outputs: $(STAMP)
	$(PY) tools/execute_notebooks.py $(OUTPUT_NOTEBOOKS)
	$(PY) tools/build_readme.py

## Static PNGs of every committed plotly figure, so GitHub shows them (no execution; unchanged figures kept).
pngs: $(STAMP)
	$(PY) tools/plotly_png.py $(OUTPUT_NOTEBOOKS)

## Rewrite every notebook's Colab set-up cell from the one template in tools/colab_cell.py (URL: settings.ini git_url).
colab-cell: $(STAMP)
	$(PY) tools/colab_cell.py

## ruff on the library, the tools, the tests and the notebooks (issue 9 section 4).
lint: $(STAMP)
	$(VENV)/bin/ruff check eelab tools tests nbs index.ipynb

clean-runs:
	rm -rf _runs test-artifacts
