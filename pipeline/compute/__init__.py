"""Where the work runs: the worker pool (local processes or Ray actors) and the torch device."""
