"""Benchmarks: scripts run from a checkout (``python -m scripts.bench.NAME``), not part of the
installed package. Each sets its thread count, prints ratios measured side by side in one run,
and is meant to run alone: timings are never asserted in tests."""
