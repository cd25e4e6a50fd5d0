"""The stages (stages/) and their machinery: the run's contract (contract/), what a run shows (reporting/), where
the work runs (compute/), and the world model, its evaluators, dreams and training at the top level."""
