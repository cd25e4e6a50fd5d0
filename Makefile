# `make demo` runs the whole pipeline at demo scale; `make test` runs the test suite.
# Both create .venv and install requirements.txt on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUN := results/demo-carracing
DEMO := --env carracing --preset demo --data data/demo-carracing --run $(RUN)

.PHONY: venv demo test bench clean-demo

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) 01_collect.py $(DEMO)
	$(PY) 02_train_vae.py $(DEMO)
	$(PY) 03_train_mdnrnn.py $(DEMO)
	$(PY) 04_train_controller.py $(DEMO)
	$(PY) 04_train_controller.py $(DEMO) --evaluate 16
	@echo "results: $(RUN)/ (plots/*.png, metrics/*.csv, config.json, controller_eval.json)"

test: venv
	$(PY) -m pytest -q tests

bench: venv
	$(PY) bench/bench.py

clean-demo:
	rm -rf data/demo-carracing $(RUN)
