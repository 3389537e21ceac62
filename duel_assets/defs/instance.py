"""The Dagster instance's configuration (``$DAGSTER_HOME/dagster.yaml``) that the commands and
the benchmarks write, and the files earlier versions wrote."""

DAGSTER_YAML = """\
# Written by duel-assets. The DuckDB warehouse takes one writer at a time: the IO manager retries
# on the lock, and the run queue keeps the number of runs writing at once small.
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 4
# The daemon (`duel-assets ui`) fails runs that never start or never finish cancelling. Runs whose
# process ended without saying so (kill -9, OOM, reboot) are failed by the dead_run_sensor and by
# every duel-assets command at its start (each run records its process: tags duel/pid, duel/host).
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  max_resume_run_attempts: 0
  poll_interval_seconds: 60
"""
# what earlier versions wrote: such a file is brought up to date; any other file is the user's own
EARLIER_YAMLS = ("""\
# Written by duel-assets. The DuckDB warehouse takes one writer at a time: the IO manager retries
# on the lock, and the run queue keeps the number of runs writing at once small.
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 4
""",)
