"""The Lightning-free core of a pruning run: the per-sample score state, the method interface, the epoch's
selection and its order, the pruning-ratio schedules, the ``ig/*`` meter, the run's step plan and the position
reached in an epoch (for exact resume).

It is the bottom layer: nothing here imports Lightning or the layers built on it (``tests/core/test_architecture.py``
checks). The Lightning adapters (:mod:`lightning_ted.adapters`) translate hooks into calls on it.
"""
