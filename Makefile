# The README's two commands, `make demo` and `make test`, bootstrap .venv themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch first, from the local CPU build: an open range would pull a multi-GB CUDA build.
TORCH := torch==2.13.0

.PHONY: demo test lint typecheck browser unit bench chaos gpu-smoke clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/wanfarm demo --examples examples --out outputs/demo

test: lint typecheck browser unit

# tests/integration/test_dashboard.py drives Debian's Chromium: installed here when missing (as
# root); elsewhere those tests skip, except under CI=true, where they fail.
browser:
	command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Two workers, each taking whole test files (a module's cluster fixture stays on one worker).
unit: $(STAMP)
	$(BIN)/pytest -n 2 --dist loadfile

# Speed and quality targets live here, not in timed tests; each prints one JSON line and exits 1 if
# it misses. All of them run; `make bench` fails at the end if any missed.
BENCHES = bench_store bench_farm_overhead bench_submit bench_dispatch bench_dashboard bench_place bench_scheduler bench_family bench_eta bench_cli_start bench_step_skip
bench: $(STAMP)
	@status=0; for bench in $(BENCHES); do \
		echo "== $$bench"; $(BIN)/python -m tests.benchmarks.$$bench || status=1; \
	done; exit $$status

# A seeded chaos run: 60 tiny jobs on a three-node Ray cluster of this machine, S3 on moto's server,
# while agents, workers, the controller, S3, a cache file, a work folder and a node fail (tests/chaos).
SEED ?= 0
CHAOS_JOBS ?= 60
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos.driver --seed $(SEED) --jobs $(CHAOS_JOBS)

# Needs a CUDA machine: the tiny models under every memory profile and attention mode.
gpu-smoke: $(STAMP)
	$(BIN)/python tests/gpu/checks.py

clean:
	rm -rf $(VENV) outputs .pytest_cache .mypy_cache .ruff_cache
