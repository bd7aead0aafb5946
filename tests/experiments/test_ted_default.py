"""``experiments/ted_default.py``: the ranking of TED variants by mean paired validation gain."""

from __future__ import annotations

import pytest
import ted_default
from frontier_runs import write_runs


def test_variants_rank_by_mean_validation_gain_and_incomplete_ones_go_last(tmp_path):
    budgets = [("budget", 1.0, s, 0.0, 90.0) for s in (0, 1)] + [("budget", 0.3, s, 0.7, 80.0) for s in (0, 1)]
    # frontier: 90 at 0% saved, 80 at 70%: 50% saved -> 82.857, 70% -> 80
    write_runs(tmp_path, "fashion", budgets + [
        ("ted", 0.5, 0, 0.5, 83.857), ("ted", 0.5, 1, 0.5, 83.857), ("ted", 0.7, 0, 0.7, 10.0),
        ("ted_q8_norm", 0.5, 0, 0.5, 82.857), ("ted_q8_norm", 0.7, 0, 0.7, 80.5),
        ("ted_gate", 0.5, 0, 0.5, 99.0),  # best cell, but never measured at 70%
        ("infobatch", 0.5, 0, 0.5, 84.857), ("infobatch", 0.7, 0, 0.7, 81.0),
    ])  # fmt: skip
    text = ted_default.main(["--tasks", "fashion", "--out", str(tmp_path)])
    ranked = ted_default.ranking(ted_default.gains(["fashion"], tmp_path), ["fashion"])
    names = [m for m, *_ in ranked]
    assert names[-1] == "ted_gate"  # incomplete: listed, not ranked
    assert names.index("infobatch") < names.index("ted_q8_norm") < names.index("ted")  # +1.5, +0.25, -34.5
    assert {m: v for m, v, *_ in ranked}["ted_q8_norm"] == pytest.approx(0.25, abs=1e-3)
    assert "| 1 | ted_q8_norm |" in text and "| 2 | ted |" in text and "| incomplete | ted_gate |" in text
    assert (tmp_path / "ted_default.md").read_text() == text


def test_a_second_task_set_writes_its_own_file_and_names_it_in_the_command(tmp_path):
    write_runs(tmp_path, "fashion", [("budget", 1.0, 0, 0.0, 90.0), ("budget", 0.3, 0, 0.7, 80.0)])
    text = ted_default.main(["--tasks", "fashion", "--out", str(tmp_path), "--output", "ted_default_all.md"])
    assert (tmp_path / "ted_default_all.md").read_text() == text and not (tmp_path / "ted_default.md").exists()
    assert "--tasks fashion --output ted_default_all.md`" in text
