# sidemesh: `make test` and `make demo` work on a fresh machine; each installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test test-deps lint typecheck unit demo clean bench bench-dataplane bench-controlplane bench-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check sidemesh tests examples bench
	$(BIN)/ruff format --check sidemesh tests examples bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# Servers and browsers the tests run for real: a Prometheus that scrapes the control
# plane, a Chromium the dashboard's tests drive (through Playwright, no browser download),
# iptables for the pod traffic redirect tested in network namespaces.
test-deps:
	@command -v prometheus >/dev/null && command -v chromium >/dev/null && \
	  command -v iptables-restore >/dev/null || \
	  (apt-get update -qq && apt-get install -y -qq --no-install-recommends \
	    prometheus chromium iptables)

unit: $(STAMP) test-deps
	$(BIN)/pytest -q

test: lint typecheck unit

demo: $(STAMP)
	$(BIN)/sidemesh up -f examples/bookinfo/mesh.yaml

# Benchmarks are not tests: they print figures and compare cases side by side.
bench-deps:
	@command -v wrk >/dev/null && command -v h2load >/dev/null && test -x /usr/sbin/nginx || \
	  (apt-get update -qq && apt-get install -y -qq wrk nginx-light nghttp2-client)

bench-dataplane: $(STAMP) bench-deps
	$(BIN)/python -m bench.dataplane

bench-controlplane: $(STAMP)
	$(BIN)/python -m bench.controlplane
	$(BIN)/python -m bench.telemetry

bench: bench-dataplane bench-controlplane

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
