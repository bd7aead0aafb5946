"""``experiments/score_validity.py``: drop sets read off each rule's state, and ``--quick`` end to end."""

from __future__ import annotations

import json

import pytest
import score_rules
import score_validity
import torch
from conftest import requires_mnist

from lightning_ted.core.selection import epoch_generator


def _rule(name: str, scores: torch.Tensor, loss: torch.Tensor | None = None) -> score_rules.Rule:
    tracker = score_rules.ScoreTracker([name], scores.numel(), torch.nn.Linear(2, 2))
    rule = tracker.rules[0]
    rule.state.score.copy_(scores)
    rule.state.last_epoch.fill_(0)
    if loss is not None and rule.state.columns:  # the one column of the ig and gated rules
        next(iter(rule.state.columns.values())).copy_(loss)
    return rule


def test_lowest_and_top_drop_sets_are_the_extreme_scores():
    scores = torch.randperm(50, generator=torch.Generator().manual_seed(0)).float()
    low = _rule("ted", scores).drop_mask(0.3, epoch_generator(0, 0))
    top = _rule("ted_top", scores).drop_mask(0.3, epoch_generator(0, 0))
    assert int(low.sum()) == int(top.sum()) == 15
    assert set(torch.nonzero(low).squeeze(1).tolist()) == set(torch.nonzero(scores < 15).squeeze(1).tolist())
    assert set(torch.nonzero(top).squeeze(1).tolist()) == set(torch.nonzero(scores >= 35).squeeze(1).tolist())


def test_class_stratified_drop_set_takes_each_classs_lowest_share_against_brute_force():
    g = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 4, (97,), generator=g)
    key = torch.rand(97, generator=g, dtype=torch.float64)
    key[:5] = float("inf")  # unscored: never dropped
    mask = score_rules.lowest_per_class(key, labels, 0.3)
    for c in range(4):
        members = torch.nonzero(labels == c).squeeze(1)
        finite = members[torch.isfinite(key[members])]
        quota = min(round(0.3 * members.numel()), finite.numel())
        expected = set(finite[key[finite].argsort()[:quota]].tolist())
        assert set(torch.nonzero(mask & (labels == c)).squeeze(1).tolist()) == expected


def test_infobatch_drop_set_lies_below_the_mean_loss_and_gated_ted_below_its_mean_loss():
    losses = torch.linspace(0.0, 1.0, 40)
    drop = _rule("infobatch", losses).drop_mask(0.3, epoch_generator(0, 0))
    assert int(drop.sum()) == 12 and bool((losses[drop] < losses.mean()).all())
    scores = -torch.arange(40.0)  # TED alone would drop the highest-loss samples
    gated = _rule("ted_gated", scores, loss=losses).drop_mask(0.3, epoch_generator(0, 0))
    assert int(gated.sum()) == 12 and bool((losses[gated] < losses.mean()).all())


@pytest.mark.slow
@requires_mnist
def test_quick_benchmark_writes_tables_figure_and_regenerates_them_from_its_cache(tmp_path):
    score_validity.main(["--quick", "--out", str(tmp_path)])
    task = score_validity.TASKS["quick"]
    rows = [json.loads(line) for line in (tmp_path / "score_validity_quick.jsonl").read_text().splitlines()]
    runs = [r for r in rows if r["kind"] != "mask"]
    expected = sum(len(score_validity.experiments_for(task, p)) for p in task.phases) * 2  # 2 seeds
    assert len(runs) == expected and len([r for r in rows if r["kind"] == "mask"]) == 8
    for r in runs:  # every drop set removed what it should, and the paired full-data run is the same
        assert abs(r["dropped"] - r["frac"]) < 0.01 or r["kind"] == "own"
    assert len({(r["seed"], r["phase"], r["full_val_loss"]) for r in runs}) == 2 * len(task.phases)
    table = (tmp_path / "score_validity_quick.md").read_text()
    assert "## Targets" in table and "Random 30% drop masks" in table and "| ted_top |" in table
    assert (tmp_path / "score_validity_quick.png").stat().st_size > 0
    score_validity.main(["--quick", "--out", str(tmp_path), "--report-only"])
    assert (tmp_path / "score_validity_quick.md").read_text() == table


def test_records_made_under_other_versions_are_counted_stale_in_the_report(tmp_path):
    from score_validity_report import append, read_cache, stale_note

    cache = tmp_path / "c.jsonl"
    append(cache, {"seed": 0, "rule": "random"})  # stamped with today's versions
    assert stale_note(read_cache(cache)) == []
    with cache.open("a") as f:
        f.write('{"seed": 1, "rule": "random"}\n')  # cached before records carried versions
    assert stale_note(read_cache(cache))[0].startswith("**1 of 2 records are stale**")
