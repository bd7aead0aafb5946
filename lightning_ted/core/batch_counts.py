"""How many batches and samples an epoch trains, by arithmetic alone: the run plan counts them before training
and the loaders cut an epoch with them, so both share one rule (Lightning's for ``limit_train_batches``, ours for
the shards).
"""

from __future__ import annotations

import math


def limited_batches(batches: int, limit: int | float) -> int:
    """Batches Lightning runs of a loader of ``batches`` under ``limit_train_batches`` (its own rule).

    >>> limited_batches(10, 3), limited_batches(10, 0.25)
    (3, 2)
    """
    return min(batches, limit) if isinstance(limit, int) else int(batches * limit)


def trained_samples(kept: int, batches: int, world: int, batch_size: int) -> int:
    """Distinct kept samples loaded when each of ``world`` ranks runs ``batches`` batches of its shard."""
    per_rank = min(math.ceil(kept / world), batches * batch_size)
    return min(kept, world * per_rank)


def batches_per_rank(kept: int, world: int, batch_size: int, drop_last: bool) -> int:
    """Training batches each rank runs in an epoch that keeps ``kept`` samples (shards padded like ours)."""
    per_rank = math.ceil(kept / world)
    return per_rank // batch_size if drop_last else math.ceil(per_rank / batch_size)
