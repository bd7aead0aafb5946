"""experiments/ig_frontier.py: its configs and its paired report, on hand-made runs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import yaml

_PATH = Path(__file__).resolve().parents[2] / "experiments" / "ig_frontier.py"


def _module():
    spec = importlib.util.spec_from_file_location("ig_frontier", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_written_config_swaps_schedule_and_ranking_and_keeps_warmup_and_anneal(tmp_path):
    f = _module()
    cfg = yaml.safe_load(f.write_config("fashion", "budget", "random", tmp_path).read_text())
    init = cfg["data"]["init_args"]
    assert init["schedule"]["class_path"].endswith("GeneralizationBudgetSchedule")
    assert init["schedule"]["init_args"] == {"warmup_epochs": 1, "anneal": 0.125}
    assert init["method"] == {"class_path": "lightning_ted.research.TEDVariant", "init_args": {"ranking": "random"}}


def test_report_pairs_budget_and_roller_coaster_by_saved_target_and_reads_the_tolerance(tmp_path, monkeypatch):
    f = _module()
    folder, out = tmp_path / "configs", tmp_path / "results"
    folder.mkdir()
    for schedule in f.SCHEDULES:
        for ranking in f.RANKINGS:
            (folder / f"fashion_{schedule}_{ranking}.yaml").write_text("{}")
    fingerprints = lambda path: SimpleNamespace(  # noqa: E731
        fingerprint=lambda: Path(path).stem, full_fingerprint=lambda: "full", max_epochs=10
    )
    monkeypatch.setattr(f, "load_config", fingerprints)
    runs = []
    for seed, (full_e, shorter) in enumerate([(0.90, 0.899), (0.92, 0.919)]):
        runs.append({"method": "full", "level": 1.0, "epochs": 10, "seed": seed, "saved": 0.0, "metric": full_e})
        runs.append({"method": "full", "level": 0.7, "epochs": 7, "seed": seed, "saved": 0.3, "metric": shorter})
        runs.append({"method": "full", "level": 0.5, "epochs": 5, "seed": seed, "saved": 0.5, "metric": 0.85})
        for target, ratio, coaster, budget in ((0.3, 0.41, 0.90, 0.91), (0.5, 0.66, 0.88, 0.87 + 0.01 * seed)):
            runs.append({"method": "ted", "level": ratio, "seed": seed, "epochs": 10, "saved": target + 0.001,
                         "metric": coaster, "config": "fashion_rollercoaster_ted"})  # fmt: skip
            runs.append({"method": "ted", "level": target, "seed": seed, "epochs": 10, "saved": target,
                         "metric": budget, "config": "fashion_budget_ted"})  # fmt: skip
        runs.append({"method": "ted", "level": 0.5, "seed": seed, "epochs": 10, "saved": 0.2,
                     "metric": full_e - 0.001, "config": "fashion_tolerance_ted"})  # fmt: skip
    for r in runs:
        r.setdefault("config", "full")
    (out / "frontier_ig_fashion").mkdir(parents=True)
    (out / "frontier_ig_fashion" / "runs.jsonl").write_text("\n".join(json.dumps(r) for r in runs) + "\n")
    text = f.report(["fashion"], folder, out)
    rows = [line for line in text.splitlines() if line.startswith("| fashion | ted |")]
    assert rows[0].startswith("| fashion | ted | 30% | +1.00 ± 0.00 | 2 | 20% | -0.10 ± 0.00 | 30% |"), rows[0]
    assert rows[1].startswith("| fashion | ted | 50% | -0.50 ± 0.50 | 2 |"), rows[1]
    assert (out / "frontier_ig.md").read_text() == text
