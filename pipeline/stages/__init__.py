"""The stages as importable functions: each module has ``parser()``, ``parse_args(argv)`` and ``run(args)``;
the numbered scripts only parse their flags and call ``run``."""
