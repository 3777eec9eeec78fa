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

.PHONY: install browser demo test lint typecheck bench fuzz clean

install: $(STAMP)
	@# Re-link the strict editable install so modules added since are importable.
	@$(PY) -m pip install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=strict

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -e ".[local,piper,dev,webrtc,daily,ray]" --config-settings editable_mode=strict
	$(PY) -m voxpipe models prepare
	touch $(STAMP)

demo: install
	$(VENV)/bin/voxpipe demo --out demo-output

test: install browser
	$(VENV)/bin/pytest -q

# The browser tests drive Chromium from the system's package manager (never a browser
# download) inside a loopback-only network namespace (`ip` from iproute2). Installed when
# missing and we are root; otherwise those tests skip, loudly, or fail where
# VOXPIPE_REQUIRE_BROWSER=1 (CI).
browser:
	@if { command -v chromium || test -x /usr/bin/chromium; } >/dev/null 2>&1 \
	  && command -v ip >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "Installing Chromium for the browser tests (apt-get install chromium iproute2)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium iproute2 \
	  || echo "!!! apt-get could not install chromium: the browser tests will not run" >&2; \
	else \
	  echo "!!! Chromium (or iproute2) is missing and this is not a root shell with apt-get:" >&2; \
	  echo "!!! the browser tests will be skipped. Install 'chromium', then run make test." >&2; \
	fi

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	cd /tmp && $(CURDIR)/$(VENV)/bin/mypy --config-file $(CURDIR)/pyproject.toml

# The realtime server's fuzzer at length (CI runs a fixed 400 inputs): random inputs, figures printed.
fuzz: install
	VOXPIPE_FUZZ_EXAMPLES=$${VOXPIPE_FUZZ_EXAMPLES:-100000} $(VENV)/bin/pytest -q -s \
	  -p no:cacheprovider --timeout 0 tests/transports/test_realtime_server_fuzz.py

bench: install
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info demo-output
