# Two entry points: `make demo` (set up, then run the main job) and `make test` (set up, then run
# the tests). Both create .venv when missing and install the pinned environment into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench lab setup clean

setup: $(STAMP)

# torch first, pinned: an unpinned torch (transformer-lens asks for torch>=2.6) would pull a
# multi-GB CUDA build on these machines.
$(STAMP): pyproject.toml requirements.lock requirements-lab.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet -r requirements-lab.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m training demo

test: $(STAMP)
	$(PY) -m pytest

# JupyterLab on the notebooks, in the same environment (pinned in requirements-lab.lock).
# LAB_ARGS passes options through, e.g. make lab LAB_ARGS="--no-browser --port 8899".
# notebooks/lab_overrides.json switches off the news pop-up and the update check (no network calls).
lab: $(STAMP)
	mkdir -p $(VENV)/share/jupyter/lab/settings
	cp notebooks/lab_overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/eval_speed.py
	$(PY) benchmarks/probe_speed.py
	$(PY) benchmarks/othello_datagen.py
	$(PY) benchmarks/sweep_throughput.py

clean:
	rm -rf $(VENV) runs
