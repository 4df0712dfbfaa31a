# Set-up and everyday commands. `make demo` and `make test` install everything they need first.
# Inside an active virtual environment (or conda env) we install into it; otherwise into ./.venv.
PYTHON ?= python3
ifdef VIRTUAL_ENV
  VENV := $(VIRTUAL_ENV)
else ifdef CONDA_PREFIX
  VENV := $(CONDA_PREFIX)
else
  VENV := .venv
endif
BIN := $(VENV)/bin
# The CPU build is small and installs in seconds; a torch you installed yourself (e.g. CUDA) is kept.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.melodylm-installed
# The SoundFont synthesizer of `melodylm render`, without its pyaudio dependency (live playback only,
# no Linux wheel, needs PortAudio headers to build); rendering to WAV does not import it.
TINYSOUNDFONT_SPEC ?= tinysoundfont>=0.3.7,<0.4

.PHONY: install demo test test-fast test-wheel bench bench-quality pretrained help browser

help:
	@echo "make demo   - install, then run the whole job on the embedded corpus (about 6 min on 2 busy cores)"
	@echo "make test   - install, then run the test suite and the wheel smoke test"
	@echo "make test-fast - the suite without the slow end-to-end tests (under a minute on 2 cores)"
	@echo "make bench  - run the side-by-side benchmarks (see BENCHMARKS.md)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -c "import torch" 2>/dev/null && echo "keeping installed torch $$($(BIN)/python -c 'import torch; print(torch.__version__)')" \
		|| $(BIN)/python -m pip install -q "$(TORCH_SPEC)" || $(BIN)/python -m pip install -q torch
	$(BIN)/python -m pip install -q -e ".[test,music21,serve,render,hf]"
	$(BIN)/python -m pip install -q --no-deps "$(TINYSOUNDFONT_SPEC)"
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/melodylm demo --force

# The playground's browser test drives Debian's chromium through its chromedriver (no browser download);
# installed once, only where /usr/bin/chromium is missing. Without apt-get the test skips and says why.
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		if command -v apt-get >/dev/null; then \
			SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); $$SUDO apt-get update && $$SUDO apt-get install -y chromium chromium-driver; \
		else echo "no apt-get here: install chromium and chromedriver to run tests/test_serve_browser.py"; fi; \
	fi

test: install browser
	$(BIN)/python -m pytest -p no:cacheprovider
	$(MAKE) test-wheel

test-fast: install
	$(BIN)/python -m pytest -p no:cacheprovider -m "not slow" -n auto

# Build the wheel, install it into a fresh venv (torch linked, not reinstalled), run the card's
# commands on the defaults from an empty temporary folder.
test-wheel: install
	PYTHON=$(BIN)/python .ci/wheel-smoke.sh

bench: install
	$(BIN)/python -m pip install -q -e ".[bench]"
	$(BIN)/python bench/tokenize_speed.py
	$(BIN)/python bench/bleu.py
	$(BIN)/python bench/ngram.py
	$(BIN)/python bench/train_speed.py
	$(BIN)/python bench/generate_speed.py
	$(BIN)/python bench/serve_latency.py

# Test bits per note of gpt, lstm, bilstm and the 5-gram on O'Neill + Essen (imports Essen first).
bench-quality: install
	$(BIN)/python bench/quality.py --minutes 30

# The shipped model: checkpoints/pretrained/recipe.toml on O'Neill + Essen with every training tune also
# transposed -3..+3 semitones (see its README). One torch thread: the LSTM made 1.0 step/s that way here,
# and two threads on cores that other work keeps busy run many times slower (the demo's measurement).
pretrained: install
	$(BIN)/melodylm tokenize corpora/oneills1850 corpora/essen -o data/pretrained-psm --transpose=-3:3 \
		--fim-order psm --fim-suffix-bars 4 --force
	$(BIN)/melodylm tokenize corpora/oneills1850 corpora/essen -o data/pretrained --transpose=-3:3 --force
	OMP_NUM_THREADS=1 $(BIN)/melodylm train --config checkpoints/pretrained/recipe.toml -o runs/pretrained --force
	OMP_NUM_THREADS=1 $(BIN)/melodylm train --config checkpoints/pretrained/recipe-finish.toml -o runs/pretrained-finish --force
	cp runs/pretrained-finish/best.pt checkpoints/pretrained/model.pt
