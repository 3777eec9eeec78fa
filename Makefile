# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create .venv if missing and install what they need, once.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.voxpipe-installed
# llama-cpp-python compiles from source (no wheel on the index): a portable
# build, so a wheel cached on one machine runs on another.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test lint typecheck bench clean

install: $(STAMP)
	@# Re-link the strict editable install so modules added since are importable.
	@$(PY) -m pip install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=strict

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -e ".[local,piper,dev]" --config-settings editable_mode=strict
	$(PY) -m voxpipe models prepare
	touch $(STAMP)

demo: install
	$(VENV)/bin/voxpipe demo --out demo-output

test: install
	$(VENV)/bin/pytest -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	cd /tmp && $(CURDIR)/$(VENV)/bin/mypy --config-file $(CURDIR)/pyproject.toml

bench: install
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info demo-output
