# sidemesh: `make test` and `make demo` work on a fresh machine; each installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test test-deps lint typecheck unit demo clean bench bench-dataplane bench-controlplane bench-deps bench-footprint bench-ondemand etcd etcd-stop

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
# iptables for the pod traffic redirect tested in network namespaces, etcd for the
# multi-host registry.
test-deps:
	@command -v prometheus >/dev/null && command -v chromium >/dev/null && \
	  command -v iptables-restore >/dev/null && command -v etcd >/dev/null && \
	  command -v etcdctl >/dev/null || \
	  (apt-get update -qq && apt-get install -y -qq --no-install-recommends \
	    prometheus chromium iptables etcd-server etcd-client)

# A local three-member etcd cluster (ports 2379/2479/2579), for trying a multi-host
# mesh on one machine: sidemesh apply -f mesh.yaml --etcd http://127.0.0.1:2379
ETCD_DIR ?= .sidemesh/etcd
ETCD_CLUSTER := m0=http://127.0.0.1:2380,m1=http://127.0.0.1:2480,m2=http://127.0.0.1:2580
etcd: test-deps
	@mkdir -p $(ETCD_DIR)
	@for i in 0 1 2; do \
	  port=$$((2379 + 100 * i)); \
	  etcd --name m$$i --data-dir $(ETCD_DIR)/m$$i \
	    --listen-client-urls http://127.0.0.1:$$port --advertise-client-urls http://127.0.0.1:$$port \
	    --listen-peer-urls http://127.0.0.1:$$((port + 1)) \
	    --initial-advertise-peer-urls http://127.0.0.1:$$((port + 1)) \
	    --initial-cluster $(ETCD_CLUSTER) --initial-cluster-state new \
	    > $(ETCD_DIR)/m$$i.log 2>&1 & echo $$! > $(ETCD_DIR)/m$$i.pid; \
	done
	@echo "etcd: http://127.0.0.1:2379,http://127.0.0.1:2479,http://127.0.0.1:2579 (make etcd-stop)"

etcd-stop:
	@for i in 0 1 2; do test -f $(ETCD_DIR)/m$$i.pid && kill $$(cat $(ETCD_DIR)/m$$i.pid) || true; \
	  rm -f $(ETCD_DIR)/m$$i.pid; done

# Tests without whole meshes run on both cores, and so do the end-to-end tests that
# check behaviour; those that measure failover, latency or load run one at a time.
unit: $(STAMP) test-deps
	$(BIN)/pytest -q -n 2 --ignore=tests/e2e
	$(BIN)/pytest -q -n 2 --dist loadgroup -m parallel tests/e2e
	$(BIN)/pytest -q -m "not parallel" tests/e2e

test: lint typecheck unit

demo: $(STAMP)
	$(BIN)/sidemesh up -f examples/bookinfo/mesh.yaml

# Benchmarks are not tests: they print figures and compare cases side by side.
bench-deps:
	@command -v wrk >/dev/null && command -v h2load >/dev/null && test -x /usr/sbin/nginx || \
	  (apt-get update -qq && apt-get install -y -qq wrk nginx-light nghttp2-client)

bench-dataplane: $(STAMP) bench-deps
	$(BIN)/python -m bench.dataplane

bench-controlplane: $(STAMP) test-deps
	$(BIN)/python -m bench.controlplane
	$(BIN)/python -m bench.telemetry
	$(BIN)/python -m bench.registry

# The mesh's memory per workload: one agent per workload against one per host.
bench-footprint: $(STAMP)
	$(BIN)/python -m bench.footprint

bench-ondemand: $(STAMP)
	$(BIN)/python -m bench.on_demand

bench: bench-dataplane bench-controlplane bench-footprint bench-ondemand

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
