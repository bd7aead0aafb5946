"""Dynamic pruning over streamed (iterable) training sets: litdata's ``StreamingDataset`` and iterable
datasets whose items carry a stable sample id.

The epoch's kept set, weights and scores come from the same :class:`~lightning_ted.core.selection.Selection` as
on the map-style path; only how the samples arrive differs. ``sources`` yields ``(global index, item)`` in
the dataset's own order and split, ``stream`` drops the pruned samples in each worker before collation, and
``epoch`` batches them, evens out DDP ranks and resumes mid-epoch.
"""

from lightning_ted.streaming.sources import IdColumnSource, LitdataSource, StreamingMapView, train_source

__all__ = ["IdColumnSource", "LitdataSource", "StreamingMapView", "train_source"]
