"""The data paths that serve an epoch's kept samples: the map-style ``DataLoader`` (``loader.py``) and the
device-resident one (``device_loader.py``); streamed datasets are served by :mod:`lightning_ted.streaming`.
"""
