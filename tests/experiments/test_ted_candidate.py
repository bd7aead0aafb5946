"""``experiments/ted_candidate.py``: the frontier decision on TED's default, read off cached runs."""

from __future__ import annotations

import ted_candidate
from frontier_runs import write_runs


def _runs(candidate: list[float], control: list[float], default: list[float]) -> list[tuple]:
    seeds = range(len(candidate))
    rows = [("budget", 1.0, s, 0.0, 90.0) for s in seeds] + [("budget", 0.3, s, 0.7, 83.0) for s in seeds]
    for name, accs in (("ted_gradnorm", candidate), ("ted_rand", control), ("ted_igd", default)):
        rows += [(name, 0.3, s, 0.3, a) for s, a in zip(seeds, accs, strict=True)]
        if name != "ted_igd":  # at 50% the default is the candidate's run (every sample a candidate)
            rows += [(name, 0.5, s, 0.5, a - 2.0) for s, a in zip(seeds, accs, strict=True)]
    return rows


def test_candidate_counts_above_the_control_only_beyond_two_standard_errors(tmp_path):
    write_runs(tmp_path, "fashion", _runs([88.0, 88.2, 88.1], [87.0, 87.1, 87.0], [87.5, 87.4, 87.6]))  # +1.07 ± 0.03
    write_runs(tmp_path, "sst2", _runs([88.0, 86.0, 88.0], [87.0, 87.0, 87.0], [88.5, 86.5, 88.5]))  # +0.33 ± 0.67
    text = ted_candidate.markdown(["fashion", "sst2"], tmp_path)
    assert "by more than 2 SE at 30% saved (validation): 1 of 2 tasks (fashion)" in text
    assert "| fashion | 30% |" in text and "**+1.07 ± 0.03** (3)" in text
    assert "above the default at 30% (validation, paired mean > 0): 1 of 2 (fashion)" in text
    # at 50% the default column reads the candidate's runs: their difference is exactly 0
    assert "| fashion | 50% |" in text and "+0.00 ± 0.00 (3)" in text.split("| fashion | 50% |")[1].split("\n")[0]


def test_a_task_without_runs_reads_as_dashes_not_an_error(tmp_path):
    write_runs(tmp_path, "fashion", _runs([88.0, 88.2], [87.0, 87.1], [87.5, 87.4]))
    text = ted_candidate.markdown(["fashion", "cifar10"], tmp_path)
    assert "| cifar10 | 30% | — | — | — |" in text and "| cifar10 | — | — | — |" in text
