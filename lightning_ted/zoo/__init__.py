"""Batteries for the experiments, the CLI and the demo: models, datamodules, dataset readers, encoders."""
