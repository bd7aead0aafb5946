"""Causal-LM pruning: a small GPT on the SST-2 training sentences as text, perplexity vs saved compute.

    python experiments/lm_ted.py              # full, random, infobatch, TED at s = 0.3 and 0.5, 3 seeds
    python experiments/lm_ted.py --quick      # 1 seed, 2 epochs, 600 sentences (the test suite runs it)

Every method trains ``TinyGPT`` from scratch on the same seeds and schedule; each sequence's loss is its
mean token loss (``sequence_loss``) and TED's terms come from the LM head summed over the positions.
Reported: validation perplexity on the SST-2 dev sentences (token level, padding excluded), mean ± std
over seeds, Δ vs ``full`` in percent, the saved share of sample-passes and the wall-time speedup vs
``full`` in the same run. Writes ``experiments/results/lm_sst2.md`` and ``lm_sst2_runs.csv``.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from pathlib import Path

import compare
import lightning as L
import torch
from paired_grid import Run, paired_runs, run_all, table, write_runs

from lightning_ted import DynamicPruningDataModule, RollerCoasterSchedule
from lightning_ted.zoo.datasets import load_sst2
from lightning_ted.zoo.demo import timed_fit
from lightning_ted.zoo.language_model import CausalLM, TinyGPT, perplexity

METHODS = ["full", "random", "infobatch", "ted"]


def _data(args):
    """Train/dev token ids over the ``args.vocab`` most frequent training words (the rest map to unknown)."""
    train, vocab = load_sst2(args.data_root, "train", max_len=args.max_len)
    dev, _ = load_sst2(args.data_root, "dev", vocab=vocab, max_len=args.max_len)
    ids, dev_ids = train.tensors[0][: args.n_train], dev.tensors[0][: args.n_dev]
    counts = torch.bincount(ids.reshape(-1), minlength=len(vocab) + 2)
    counts[:2] = counts.max() + 1  # padding (0) and unknown (1) keep their ids
    order = counts.argsort(descending=True, stable=True)
    remap = torch.ones(len(vocab) + 2, dtype=torch.int64)  # everything else: unknown
    size = min(args.vocab, len(vocab) + 2)
    remap[order[:size]] = torch.arange(size)
    return remap[ids], remap[dev_ids], size


def run_one(run: Run, args) -> Run:
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    ids, dev, vocab = _data(args)
    L.seed_everything(run.seed, verbose=False)
    model = CausalLM(TinyGPT(vocab, dim=args.dim, layers=args.layers, heads=4, max_len=args.max_len), lr=args.lr)
    dm = DynamicPruningDataModule(
        torch.utils.data.TensorDataset(ids),
        method=compare.parse_method(run.method),
        schedule=RollerCoasterSchedule(ratio=run.ratio, beta=args.beta),
        batch_size=args.batch_size,
        seed=run.seed,
    )
    _, run.seconds = timed_fit(model, dm, args.epochs)
    run.saved = dm.saved_fraction(args.epochs - 1)
    run.metric = perplexity(model, dev)
    return run


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.3, 0.5])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--n-train", type=int, default=100_000, help="training sentences (SST-2 has 6920)")
    parser.add_argument("--n-dev", type=int, default=100_000, help="dev sentences for perplexity (SST-2 has 872)")
    parser.add_argument("--vocab", type=int, default=2000, help="most frequent training words kept (+ pad, unk)")
    parser.add_argument("--max-len", type=int, default=32)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--beta", type=float, default=compare.DEFAULT_BETA)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 epochs, 600 sentences, small vocab and GPT")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", type=Path, default=compare.RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.n_train, args.n_dev = args.seeds[:1], 2, 600, 200
        args.dim, args.layers, args.vocab = 32, 1, 500
    args.threads = max(1, torch.get_num_threads() // max(1, args.workers))
    runs = paired_runs(METHODS, args.ratios, args.seeds)
    start = time.perf_counter()
    done = run_all(run_one, runs, args, args.workers)
    ids, dev, vocab = _data(args)
    header = (
        f"TinyGPT (dim {args.dim}, {args.layers} layers, vocab {vocab}) on {ids.shape[0]} SST-2 training sentences "
        f"(max {args.max_len} tokens), {args.epochs} epochs, batch {args.batch_size}, AdamW lr {args.lr}, "
        f"roller-coaster beta={args.beta}, seeds {args.seeds}; dev perplexity on {dev.shape[0]} sentences; "
        f"{args.workers} parallel runs x {args.threads} threads; grid took {time.perf_counter() - start:.0f} s"
    )
    text = table(done, header, "val perplexity", relative=True, order=METHODS)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.quick:
        (args.out / "lm_sst2.md").write_text(text)
        write_runs(done, args.out / "lm_sst2_runs.csv")
    print(text)
    return text


if __name__ == "__main__":
    main()
