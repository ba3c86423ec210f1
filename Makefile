# Two set-up commands: `make run` and `make test`. Both create .venv when it is missing.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# CPU build of torch, installed before sentence-transformers so pip never pulls a CUDA build.
TORCH  := torch==2.13.0

.PHONY: run test bench lint install install-dev clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Runtime install: no torch.
$(VENV)/.installed-base: pyproject.toml | $(PY)
	$(PIP) install -q -e .
	@touch $@

# Tests exercise the sentence-transformers path too: torch (CPU) first, then the extras.
$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[dev,st]'
	@touch $@ $(VENV)/.installed-base

install: $(VENV)/.installed-base
install-dev: $(VENV)/.installed-dev

run: $(VENV)/.installed-base
	@if [ -n "$$DISCORD_TOKEN" ]; then $(VENV)/bin/studybot run; else $(VENV)/bin/studybot chat; fi

test: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest

bench: $(VENV)/.installed-dev
	@for f in bench/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
