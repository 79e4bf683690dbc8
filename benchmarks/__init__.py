"""The triows benchmark harness (issue 5): ``python -m benchmarks.run [--quick]``.

Every server runs as its own process on loopback, driven by a separate
load-generator process (:mod:`benchmarks.loadgen`); :mod:`benchmarks.run` starts
both, pins them to separate cores, repeats and interleaves the runs, and writes
``benchmarks/results/latest.md`` and ``latest.png``.
"""
