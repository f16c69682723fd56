"""The benchmark scripts run end to end on tiny sizes and print their tables (slow: CI runs them)."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

RUNS = {
    "bench_sqrtm.py": ["--sizes", "8", "--dtypes", "float32", "--repeats", "1"],
    "bench_approximants.py": ["--dims", "8", "--repeats", "2"],
    "bench_memory.py": ["--dim", "8", "--batch", "2", "--runs", "1", "--routes", "exact,ns"],
    "bench_head.py": ["--batch", "2", "--channels", "64", "--size", "4", "--reduced-dim", "8", "--repeats", "1"],
    "bench_train.py": ["--batch", "2", "--img-size", "32", "--rounds", "2"],
    "bench_second_order.py": ["--dims", "8", "--batch", "2", "--repeats", "1"],
}


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(RUNS))
def test_benchmark_runs(script, tmp_path):
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", script), *RUNS[script],
                           "--results", str(results)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "|---" in proc.stdout  # a markdown table was printed
    (written,) = results.iterdir()  # ... and written to one dated results file
    assert written.name.startswith(script[:-3] + "-") and "|---" in written.read_text()
    assert "torch " + __import__("torch").__version__ in written.read_text()
