"""Shared machinery of the numbered stages: CLI contract, run config, checkpoints, metrics, plots."""
