# `make demo` runs the whole pipeline at demo scale; `make test` runs the test suite.
# Both create .venv and install requirements.txt on first use, at the exact versions of requirements.lock.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUN := results/demo-carracing
DEMO := --env carracing --preset demo --data data/demo-carracing --run $(RUN)

DREAM_RUN := results/demo-carracing-dream
DRIVER_RUN := results/driver-carracing
DRIVER := --env carracing --preset driver --data data/driver-carracing --run $(DRIVER_RUN)

.PHONY: venv demo dream-demo dream-carracing driver play test test-fast bench clean-demo lock

# requirements*.txt say what is needed; requirements.lock (a pip constraints file) says which exact version.
LOCK := requirements.lock
INSTALL := $(PY) -m pip install --quiet --disable-pip-version-check -c $(LOCK)

$(VENV)/.installed: requirements.txt $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(INSTALL) -r requirements.txt
	touch $@

venv: $(VENV)/.installed

# Optional packages the tests exercise: Ray (--backend ray), Minari and TensorBoard (docs/tools.md); and ONNX Runtime
# Web for 05_dream.py --web, from npm at package-lock.json's versions into node_modules/.
$(VENV)/.test-installed: $(VENV)/.installed requirements-ray.txt requirements-extras.txt $(LOCK) package.json package-lock.json
	$(INSTALL) -r requirements-ray.txt -r requirements-extras.txt
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Upgrading on purpose: re-resolve every requirements file in a fresh venv, write the lock, then run the tests
# that catch a drifted library (FastCarRacing against the stock env byte for byte, the store, Minari, the models).
DRIFT_TESTS := test_fast_carracing test_store test_collect test_minari test_models test_shapeherd
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-ray.txt \
		-r requirements-extras.txt
	{ echo "# Exact versions of everything make and CI install (pip constraints). Written by make lock; see"; \
	  echo "# docs/tools.md#pinned-versions."; .lock-venv/bin/pip freeze; } > $(LOCK).new
	SDL_VIDEODRIVER=dummy .lock-venv/bin/python -m pytest -q $(addprefix tests/,$(addsuffix .py,$(DRIFT_TESTS)))
	mv $(LOCK).new $(LOCK)
	rm -rf .lock-venv

# The five stages on one set of flags ($(1)), C scored on $(2) fresh episodes.
define PIPELINE
	$(PY) 01_collect.py $(1)
	$(PY) 02_train_vae.py $(1)
	$(PY) 03_train_mdnrnn.py $(1)
	$(PY) 04_train_controller.py $(1)
	$(PY) 04_train_controller.py $(1) --evaluate $(2)
	$(PY) 05_dream.py $(1)
endef

demo: venv
	$(call PIPELINE,$(DEMO),16)
	@echo "results: $(RUN)/ (open report.html; plots/, dreams/, metrics/, config.json, controller_eval.json)"

# The same V and M, with C evolved inside M's dream instead of the real env; then scored in the real env.
dream-demo: demo
	rm -rf $(DREAM_RUN) && mkdir -p $(DREAM_RUN)/plots
	cp $(RUN)/config.json $(RUN)/vae.pt $(RUN)/mdnrnn.pt $(RUN)/latents.h5 $(DREAM_RUN)/
	cp $(RUN)/plots/vae_* $(RUN)/plots/mdnrnn_* $(DREAM_RUN)/plots/
	$(PY) 04_train_controller.py $(DEMO) --run $(DREAM_RUN) --in dream
	$(PY) 04_train_controller.py $(DEMO) --run $(DREAM_RUN) --evaluate 16
	$(PY) 05_dream.py $(DEMO) --run $(DREAM_RUN)

# The CarRacing driver recipe from nothing (about 2 h on an idle 2-core CPU): collect, V, M, C in the real env, then
# the score over 100 fresh episodes (seeds no choice was made on), the dreams and the report.
# The CarRacing driver (docs/driver.md): C evolves 65 generations on 2 episodes a candidate, then 20 more on 4;
# the scored CMA means are scored again on 32 fresh selection episodes and the best is kept, then scored on 100.
# Scores are played in batches of --trials episodes: the same 4 from the continuation on.
driver: venv
	$(PY) 01_collect.py $(DRIVER)
	$(PY) 02_train_vae.py $(DRIVER)
	$(PY) 03_train_mdnrnn.py $(DRIVER)
	$(PY) 04_train_controller.py $(DRIVER)
	$(PY) 04_train_controller.py $(DRIVER) --generations 85 --trials 4 --eval-every 5
	$(PY) 04_train_controller.py $(DRIVER) --trials 4 --reselect 32
	$(PY) 04_train_controller.py $(DRIVER) --trials 4 --evaluate 100 --publish
	$(PY) 05_dream.py $(DRIVER) --dreams 2
	@echo "results: $(DRIVER_RUN)/ (open report.html; controller_eval.json has the 100 returns)"

# C trained only inside M's dream (docs/dreams.md): the driver's 48 Brownian episodes and V, M with 5 bootstrap reward
# heads that under-promise (over-prediction weight 2), then 7 rounds of iterate.py (collect 16 episodes with C,
# fine-tune M, evolve C in the dream from the last C, score it), then the published score (3 x 100 fresh episodes).
# Every fitness C sees comes from M; the real env collects and scores. What ships in pretrained/carracing-dream/.
DREAM_CR_RUN := results/dream-carracing
DREAM_CR_DATA := data/dream-carracing
DREAM_CR := --env carracing --data $(DREAM_CR_DATA) --run $(DREAM_CR_RUN)
dream-carracing: venv
	$(PY) 01_collect.py $(DREAM_CR) --preset driver
	$(PY) 02_train_vae.py $(DREAM_CR) --preset driver
	$(PY) 03_train_mdnrnn.py $(DREAM_CR) --preset driver --reward-heads 5 --reward-over-weight 2
	$(PY) iterate.py $(DREAM_CR) --rounds 7 --episodes-per-round 16 --finetune-epochs 8 --generations 20 --pop 32 \
		--trials 16 --dream-steps 300 --score-episodes 8 --calibration-episodes 4 --workers 2
	$(PY) 04_train_controller.py $(DREAM_CR) --trials 4 --evaluate 100 --publish
	$(PY) 05_dream.py $(DREAM_CR) --dreams 2

# Drive the car inside the demo run's dream with the arrow keys (needs a display).
play: venv
	$(PY) 05_dream.py $(DEMO) --play

test: venv $(VENV)/.test-installed
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n auto --dist worksteal --durations=15 tests

# The unit-level tests (no stage run end to end, no Ray instance): a couple of minutes, for quick iterations.
FAST_TESTS := test_bench_table test_cores test_resample test_device_paths test_docs_links test_evolution test_fast_carracing test_joint test_latents test_models \
	test_play_keys test_pool test_runconfig test_shapeherd test_store test_requirements test_layout test_doc_figures \
	test_dream_figures
test-fast: venv $(VENV)/.test-installed
	$(PY) -m pytest -q -n auto -m "not ray" $(addprefix tests/,$(addsuffix .py,$(FAST_TESTS)))

bench: venv
	$(PY) bench/bench.py

clean-demo:
	rm -rf data/demo-carracing $(RUN) $(DREAM_RUN)
