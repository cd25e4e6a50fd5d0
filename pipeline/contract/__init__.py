"""The run's contract: the command line, config.json, checkpoints, the folder lock, seeds, presets, errors."""
