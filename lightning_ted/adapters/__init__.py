"""The Lightning adapters: :class:`~lightning_ted.TEDPruningCallback` and
:class:`~lightning_ted.DynamicPruningDataModule`, and what they need from the Trainer (fit start, batch hooks
of a wrapped DataModule, LightningCLI nesting, checkpoints, the first-step checks, the loss helpers, the fit
summary). Works under both ``lightning`` and the standalone ``pytorch_lightning`` (``compat.py``).
"""
