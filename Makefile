# Two entry points that work on a fresh machine: both create .venv when it is missing.
PY := .venv/bin/python

.PHONY: bootstrap demo lint test test-all test-slow bench bench-gpu

bootstrap:
	@bash scripts/bootstrap.sh

demo: bootstrap
	$(PY) -m gcp.compare --quick --reference results/compare-2026-12-05

lint: bootstrap
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest -q --durations=15

test-all: bootstrap
	$(PY) -m pytest -q -m "slow or not slow"

test-slow: bootstrap
	$(PY) -m pytest -q -m slow --durations=15

bench: bootstrap
	$(PY) benchmarks/bench_sqrtm.py
	$(PY) benchmarks/bench_approximants.py
	$(PY) benchmarks/bench_memory.py
	$(PY) benchmarks/bench_head.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_second_order.py

# every benchmark on a GPU in one call (for a lent accelerator)
bench-gpu: bootstrap
	$(PY) benchmarks/bench_sqrtm.py --device cuda
	$(PY) benchmarks/bench_approximants.py --device cuda --dims 64 128 256
	$(PY) benchmarks/bench_memory.py --device cuda
	$(PY) benchmarks/bench_head.py --device cuda
	$(PY) benchmarks/bench_train.py --device cuda
	$(PY) benchmarks/bench_second_order.py --device cuda
	$(PY) benchmarks/bench_gpu_eigh.py --device cuda
