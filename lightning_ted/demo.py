"""``python -m lightning_ted.demo``: the entry point of the demo, which lives in :mod:`lightning_ted.zoo.demo`."""

from lightning_ted.zoo.demo import main

if __name__ == "__main__":
    main()
