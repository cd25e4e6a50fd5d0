"""What a run shows: metrics CSVs, plots, report.html, live logging, progress bars, the keyboard-driven dream."""
