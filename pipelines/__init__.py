"""The nightly steps: one module per step, plain Python, Parquet in and out through `storage`.

No Airflow imports here: `dags/` wires these functions; the simulator and the benchmarks call them
directly. Every step function takes the settings and the run date and is idempotent for that date.
"""
