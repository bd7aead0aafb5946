"""The Lightning-free core of a pruning run: the per-sample score state, the epoch's selection and its order,
the pruning-ratio schedules, the run's step plan and the position reached in an epoch (for exact resume).

Nothing here imports a Trainer; the Lightning adapters (:mod:`lightning_ted.adapters`) translate hooks into
calls on it.
"""
