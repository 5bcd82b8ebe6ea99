"""Experiments: scripts run from a checkout (``python -m scripts.experiments.NAME``), not part of
the installed package. Their committed results stay under ``results/``."""
