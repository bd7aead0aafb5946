"""``experiments/gpu_speed.py`` runs end to end at a tiny size on the CPU and reports what it claims to."""

from __future__ import annotations

import gpu_speed
import pytest

pytestmark = pytest.mark.skipif(
    not (gpu_speed.DATA / "cifar10_train.npz").exists(), reason="no CIFAR-10 in shared/data"
)


def test_cifar_subset_is_class_balanced_uint8_nchw():
    data = gpu_speed.load_cifar(gpu_speed.DATA, 200)
    x, y = data.tensors
    assert x.shape == (200, 3, 32, 32) and str(x.dtype) == "torch.uint8"
    assert y.bincount(minlength=10).tolist() == [20] * 10


@pytest.mark.slow
def test_tiny_run_writes_the_table(tmp_path):
    out = tmp_path / "speed.md"
    text = gpu_speed.main(
        ["--tiny", "--limit", "256", "--nets", "resnet9", "--paths", "device", "standard", "--saved", "0.5", "--out",
         str(out)]
    )  # fmt: skip
    assert out.read_text() == text
    rows = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| resnet9")]
    assert [(r[1].strip(), r[2].strip()) for r in rows] == [
        (path, arm) for path in ("device", "standard") for arm in ("plain", "full (ratio 0)", "TED 50% saved")
    ]
    for r in rows:
        assert float(r[3]) > 0 and float(r[4]) > 0  # epoch seconds and steps/s
    ted = [r for r in rows if r[2].strip().startswith("TED")]
    assert all(int(r[5]) == 128 and r[8].strip() == "2.00x" for r in ted)  # kept half; ideal 1 / (1 - 0.5)
