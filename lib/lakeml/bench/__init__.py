"""The benchmark harness (scripts/bench.py, `make bench`): every stage at scale, timed,
with its peers on the same data. Not imported by the jobs."""
