"""How a run is watched: the per-epoch metrics the callback logs, run-history readers and plots."""
