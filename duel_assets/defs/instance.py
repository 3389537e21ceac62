"""The Dagster instance's configuration (``$DAGSTER_HOME/dagster.yaml``) that the commands and
the benchmarks write when the file is missing."""

DAGSTER_YAML = """\
# Written by duel-assets. The DuckDB warehouse takes one writer at a time: the IO manager retries
# on the lock, and the run queue keeps the number of runs writing at once small.
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 4
"""
