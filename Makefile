# moeviz: `make serve`, `make test` and `make test-fast` do every set-up step they need.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.moeviz-setup

.PHONY: setup serve test test-fast arch-models bench clean chromium axe node demo-site demo-model

setup: $(STAMP)

# The venv, the patched llama-cpp-python (wheel cached in ~/.cache/moeviz: seconds
# after the first ~10 min build), then moeviz itself and its test tools.
$(STAMP): pyproject.toml setup.py patches/build-llama-cpp.sh $(wildcard patches/*.patch) $(wildcard patches/rpc-server/*.patch)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip > $(VENV)/pip.log 2>&1 || { cat $(VENV)/pip.log; exit 1; }
	bash patches/build-llama-cpp.sh $(PY)
	@echo "moeviz: installing moeviz and its dependencies into $(VENV)"
	@$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]' > $(VENV)/pip.log 2>&1 || { cat $(VENV)/pip.log; exit 1; }
	@$(PY) -c "import moeviz, llama_cpp, fastapi, gguf" || { echo "moeviz: set-up failed: packages missing from $(VENV)"; exit 1; }
	@touch $(STAMP)

serve: setup
	$(VENV)/bin/moeviz serve $(ARGS)

# Browser tests drive Debian's chromium (never a downloaded browser build).
chromium:
	@command -v chromium >/dev/null 2>&1 || { echo "moeviz: installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The page's accessibility check uses axe-core from npm, kept outside the repository
# (tests/test_browser_page.py installs the same version itself when it is missing).
AXE_VERSION := 4.14.1
AXE_DIR     := $(or $(MOEVIZ_CACHE),$(HOME)/.cache/moeviz)/axe
axe:
	@test -f $(AXE_DIR)/node_modules/axe-core/axe.min.js || { command -v npm >/dev/null 2>&1 || { echo "moeviz: installing Debian's npm"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null; }; \
		echo "moeviz: installing axe-core $(AXE_VERSION) for the accessibility check"; \
		npm install --prefix $(AXE_DIR) --no-audit --no-fund --silent axe-core@$(AXE_VERSION); }

# The page's figures and trace checks against Python's golden files (tests/js/, node's
# own test runner: no npm packages).
node:
	@command -v node >/dev/null 2>&1 || { echo "moeviz: installing Debian's nodejs for the page's unit tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs >/dev/null; }

# llama.cpp's own generator of random models for every architecture it supports, the
# breadth fixtures of the tests marked `archgen` (tests/test_archs.py): a C++ build of
# ~15 min on 2 cores the first time, then cached in ~/.cache/moeviz/archgen like the wheel.
arch-models: setup
	@bash tests/build-arch-models.sh > /dev/null

# Two tiers (tests/conftest.py says which test is in which): `make test` runs everything
# (.ci/run calls it); `make test-fast`, for the edit loop, everything but the tests marked
# slow, browser, server or archgen, plus one real server and one page in Chromium (smoke),
# plus node's tests of the page's JS: under 3 minutes on 2 cores.
FAST_TIER := smoke or not (slow or browser or server or archgen)

test: setup chromium axe node arch-models
	$(PY) -m pytest $(ARGS)
	node --test tests/js/*.test.js

test-fast: setup chromium node
	$(PY) -m pytest -m "$(FAST_TIER)" $(ARGS)
	node --test tests/js/*.test.js

bench: setup
	$(PY) bench/capture_overhead.py
	$(PY) bench/server_latency.py
	$(PY) bench/panel_time.py
	$(PY) bench/qwen3_shape.py
	$(PY) bench/replay_load.py
	$(PY) bench/rpc_split.py
	$(PY) bench/soak.py
	$(PY) bench/parallel.py
	$(PY) bench/grammar_speed.py
	$(PY) bench/analysis_speed.py

# Retrain the shipped demo model (moeviz/data/demo-moe.gguf): 64 experts top-4; about 75 minutes
# on 2 cores (docs/demo-model.md).
# PyTorch (CPU build) is needed only here, never by moeviz at run time or by the tests.
demo-model: setup
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.14.1
	$(PY) -m moeviz.demo_model.train --out moeviz/data/demo-moe.gguf --seed 0 --steps 3981 --batch 4 --threads 1 \
		--n-expert 64 --n-expert-used 4 --n-ff 32

# A static demo site from the default model and the bundled prompts (publish site/ anywhere).
demo-site: setup
	$(VENV)/bin/moeviz export --out site --prompts prompts

clean:
	rm -rf $(VENV) .pytest_cache
