"""DDP on 2 CPU processes (gloo): identical kept sets and states on every rank, exact shard coverage.

Run alone with ``pytest -m ddp``.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import rank_results, requires_mnist, run_worker
from ddp_worker import MID_BATCH

WORKER = Path(__file__).resolve().parent / "ddp_worker.py"
pytestmark = [pytest.mark.ddp, pytest.mark.slow, requires_mnist]


def _launch(
    out: Path, devices: int, batch_size: int, ckpt: Path | None = None, reference="ema", schedule="rollercoaster"
) -> list[dict]:
    out.mkdir()
    run_worker(WORKER, out, devices, batch_size, *([ckpt] if ckpt else []), TED_REFERENCE=reference,
               TED_SCHEDULE=schedule)  # fmt: skip
    return rank_results(out, devices)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("ddp")
    two = _launch(base / "two", devices=2, batch_size=32)
    one = _launch(base / "one", devices=1, batch_size=64)  # same global batch
    return two, one, base


@pytest.fixture(scope="module")
def resumed(runs, tmp_path_factory):
    *_, base = runs
    return {
        name: _launch(base / f"resumed_{name}", devices=2, batch_size=32, ckpt=base / "two" / f"{name}.ckpt")
        for name in ("epoch1", "last_batch", "mid")
    }


def test_every_rank_keeps_the_same_set_and_ends_with_the_same_state(runs):
    (r0, r1), _, _ = runs
    assert r0["world_size"] == 2
    for epoch in r0["kept"]:
        assert torch.equal(r0["kept"][epoch], r1["kept"][epoch])
    assert torch.equal(r0["score"], r1["score"])  # bit-identical after every sync
    assert torch.equal(r0["seen_count"], r1["seen_count"])
    assert torch.equal(r0["ig_sums"], r1["ig_sums"]) and (r0["ig_sums"][:, 3] > 0).any()  # returning samples read
    assert torch.equal(r0["ig_class_sums"], r1["ig_class_sums"]) and r0["ig_class_sums"].shape[1] == 10  # per class
    torch.testing.assert_close(r0["ig_last_loss"], r1["ig_last_loss"], rtol=0, atol=0, equal_nan=True)
    assert torch.equal(r0["kept_history"], r1["kept_history"])
    assert torch.isfinite(r0["score"]).all()


def test_shards_cover_the_kept_set_once_up_to_padding(runs):
    (r0, r1), _, _ = runs
    for epoch, kept in r0["kept"].items():
        seen0, seen1 = r0["seen"][epoch], r1["seen"][epoch]
        assert seen0.numel() == seen1.numel() == math.ceil(kept.numel() / 2)
        union = torch.cat([seen0, seen1])
        assert torch.equal(union.unique(), kept.sort().values)  # nothing lost
        assert union.numel() - kept.numel() < 2  # duplicates only from the documented padding
    # a padded sample enters the scores once: visit counts equal the number of epochs it was kept
    kept_counts = torch.zeros_like(r0["seen_count"])
    for kept in r0["kept"].values():
        kept_counts[kept] += 1
    assert torch.equal(r0["seen_count"], kept_counts)


def test_two_processes_match_one_process_with_the_same_global_batch(runs):
    (r0, _), (single,), _ = runs
    assert torch.equal(r0["kept_history"], single["kept_history"])
    assert r0["kept_history"][1:].lt(2000).all()  # the pruning epochs really prune
    assert abs(r0["acc"] - single["acc"]) < 0.03, (r0["acc"], single["acc"])


def _same_params(a: dict, b: dict) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a["params"], b["params"], strict=True))


@pytest.mark.parametrize("checkpoint", ["epoch1", "last_batch"])  # last_batch: Lightning skips the epoch's end
def test_resume_at_epoch_boundary_under_ddp_matches_uninterrupted_run(runs, resumed, checkpoint):
    two, _, _ = runs
    for full, again in zip(two, resumed[checkpoint], strict=True):  # per rank
        assert sorted(again["kept"]) == [2, 3]
        for epoch in (2, 3):
            assert torch.equal(again["kept"][epoch], full["kept"][epoch])
            assert torch.equal(again["seen"][epoch], full["seen"][epoch])
        assert _same_params(again, full)
        assert torch.equal(again["score"], full["score"])
        assert torch.equal(again["seen_count"], full["seen_count"])
        torch.testing.assert_close(again["ig_sums"], full["ig_sums"], rtol=0, atol=1e-12)
        torch.testing.assert_close(again["ig_class_sums"], full["ig_class_sums"], rtol=0, atol=1e-12)
        assert torch.equal(again["kept_history"], full["kept_history"])


def test_resume_mid_epoch_under_ddp_neither_repeats_nor_skips(runs, resumed):
    two, _, _ = runs
    for full, again in zip(two, resumed["mid"], strict=True):  # per rank
        trained = (MID_BATCH + 1) * 32  # samples of epoch 2 this rank trained before the checkpoint
        assert torch.equal(again["seen"][2], full["seen"][2][trained:])
        assert torch.equal(again["seen"][3], full["seen"][3])
        assert _same_params(again, full)
        assert torch.equal(again["score"], full["score"])
        assert torch.equal(again["seen_count"], full["seen_count"])
        torch.testing.assert_close(again["ig_sums"], full["ig_sums"], rtol=0, atol=1e-12)
        torch.testing.assert_close(again["ig_class_sums"], full["ig_class_sums"], rtol=0, atol=1e-12)


def test_pruned_reference_is_one_all_reduce_identical_on_every_rank(tmp_path):
    """Each rank scores its stride of the pruned subsample; the summed reference is the same on both."""
    r0, r1 = _launch(tmp_path / "pruned", devices=2, batch_size=32, reference="pruned")
    epoch, ref_w, ref_b = r0["pruned_ref"]
    assert epoch == 3 and ref_w is not None  # the last epoch prunes (anneal=0), so a reference exists
    assert r1["pruned_ref"][0] == epoch
    assert torch.equal(ref_w, r1["pruned_ref"][1]) and torch.equal(ref_b, r1["pruned_ref"][2])
    assert torch.equal(r0["score"], r1["score"]) and torch.isfinite(r0["score"]).all()
    for e in r0["kept"]:
        assert torch.equal(r0["kept"][e], r1["kept"][e])


def test_budget_schedule_under_ddp_sets_the_same_ratios_on_every_rank_and_after_a_resume(tmp_path):
    """Issue 30: the ratios come from the ig readings each rank folds from the same gathered observations; a
    mid-epoch resume reads them from the checkpoint. The saving is exact in whole steps of 2 x 32 samples."""
    full = _launch(tmp_path / "full", devices=2, batch_size=32, schedule="budget")
    again = _launch(tmp_path / "again", devices=2, batch_size=32, ckpt=tmp_path / "full" / "mid.ckpt",
                    schedule="budget")  # fmt: skip
    r0, r1 = full
    for epoch in r0["kept"]:
        assert torch.equal(r0["kept"][epoch], r1["kept"][epoch])
    assert torch.equal(r0["ig_sums"], r1["ig_sums"]) and (r0["ig_sums"][:, 3] > 0).any()
    history = r0["kept_history"]
    assert 2000 * 4 - int(history.sum()) == round(0.3 * 4 * 2000 / 64) * 64
    for rank_full, rank_again in zip(full, again, strict=True):
        assert torch.equal(rank_again["kept_history"], rank_full["kept_history"])
        for epoch in (2, 3):
            assert torch.equal(rank_again["kept"][epoch], rank_full["kept"][epoch])
        assert _same_params(rank_again, rank_full)
