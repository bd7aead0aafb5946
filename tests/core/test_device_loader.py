"""The device-resident train loader serves exactly the standard loader's batches (CPU): same shards, same
order, same weights, same trained model; resumable mid-epoch; refuses options it cannot honour."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from conftest import make_trainer, subset
from test_end_to_end import EpochRecorder
from test_resume import SaveAt
from torch.utils.data import TensorDataset

from lightning_ted import TED, ConstantSchedule, DynamicPruningDataModule, RollerCoasterSchedule, TEDPruningCallback
from lightning_ted.core.batch import IndexedCollate, IndexedSample
from lightning_ted.core.epoch_order import EpochShuffleSampler
from lightning_ted.core.resume import EpochCursor
from lightning_ted.core.selection import random_drop_selection
from lightning_ted.data.device_loader import DeviceResidentLoader, wants_device_resident
from lightning_ted.data.loader import KeptDataset, PruningDataLoader
from lightning_ted.zoo.demo import ImageClassifier


def _dataset(n: int = 103) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 3, 4, generator=g), torch.randint(0, 5, (n,), generator=g))


def _selection(n: int, ratio: float = 0.4):
    scores = torch.randn(n, generator=torch.Generator().manual_seed(1))
    return random_drop_selection(scores, ratio, 0.5, torch.Generator().manual_seed(2))


def _standard(ds, sel, epoch, batch_size, drop_last, world, rank):
    return PruningDataLoader(
        KeptDataset(ds, sel, gather_tensors=True),
        cursor=EpochCursor(epoch),
        batch_size=batch_size,
        sampler=EpochShuffleSampler(len(sel), 7, epoch, world, rank),
        collate_fn=IndexedCollate(),
        drop_last=drop_last,
    )


def _assert_same_batches(a, b) -> None:
    a, b = list(a), list(b)
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        assert isinstance(y, IndexedSample)
        assert x.index.dtype == y.index.dtype == torch.int64 and x.weight.dtype == y.weight.dtype == torch.float32
        assert torch.equal(x.index, y.index) and torch.equal(x.weight, y.weight)
        assert len(x.data) == len(y.data)
        for u, v in zip(x.data, y.data, strict=True):
            assert torch.equal(u, v)


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [1, 3, 10, 103])
def test_the_ranks_shards_cover_the_epoch_order_from_its_start(n, world):
    """Brute force: the shards, interleaved, are the epoch's order from ``start`` on, padded by < world."""
    for epoch, start in ((0, 0), (5, 0), (5, n // 2)):
        shards = []
        for rank in range(world):
            sampler = EpochShuffleSampler(n, 7, epoch, world, rank)
            sampler.start = start
            assert sampler.shard().tolist() == list(sampler)
            shards.append(sampler.shard())
        order = EpochShuffleSampler(n, 7, epoch).order()[start:].tolist()
        interleaved = torch.stack(shards, 1).reshape(-1).tolist() if order else []
        assert interleaved[: len(order)] == order and len(interleaved) - len(order) < world


@pytest.mark.parametrize(
    ("world", "batch_size", "drop_last"), [(1, 16, False), (1, 16, True), (2, 10, False), (3, 7, True)]
)
def test_batches_equal_the_standard_loaders_on_every_rank(world, batch_size, drop_last):
    ds, sel = _dataset(), _selection(103)
    assert 0 < sel.num_unit_weight < len(sel)  # both weight kinds are served
    for epoch in (0, 3):
        for rank in range(world):
            cursor = EpochCursor(epoch)
            sampler = EpochShuffleSampler(len(sel), 7, epoch, world, rank)
            device = DeviceResidentLoader(ds.tensors, sel, cursor, sampler, batch_size=batch_size, drop_last=drop_last)
            standard = _standard(ds, sel, epoch, batch_size, drop_last, world, rank)
            assert len(device) == len(standard)
            _assert_same_batches(standard, device)


def test_resumed_loader_skips_exactly_the_trained_batches():
    ds, sel = _dataset(), _selection(103)
    full = list(
        DeviceResidentLoader(ds.tensors, sel, EpochCursor(2), EpochShuffleSampler(len(sel), 7, 2), batch_size=8)
    )
    resumed = DeviceResidentLoader(ds.tensors, sel, EpochCursor(2), EpochShuffleSampler(len(sel), 7, 2), batch_size=8)
    with pytest.raises(RuntimeError, match="stopped in epoch 1 but Lightning resumes epoch 2"):
        resumed.load_state_dict({"epoch": 1, "batches": 3})
    resumed.load_state_dict({"epoch": 2, "batches": 3})
    assert resumed.state_dict() == {"epoch": 2, "batches": 3}
    _assert_same_batches(full[3:], resumed)
    standard = _standard(ds, sel, 2, 8, False, 1, 0)
    standard.load_state_dict({"epoch": 2, "batches": 3})
    _assert_same_batches(standard, resumed)


def test_datamodule_serves_the_same_batches_on_both_paths():
    ds = _dataset(200)
    loaders = []
    for resident in (False, True):
        dm = DynamicPruningDataModule(
            ds,
            method=TED(),
            schedule=ConstantSchedule(0.5, warmup_epochs=0, max_epochs=3),
            batch_size=16,
            seed=4,
            device_resident=resident,
        )
        dm.setup("fit")
        dm.state.score.copy_(torch.randn(200, generator=torch.Generator().manual_seed(3)))  # epoch 0 prunes
        loaders.append(dm.train_dataloader())
        assert len(dm.current_selection) < 200
    assert isinstance(loaders[1], DeviceResidentLoader) and not isinstance(loaders[0], DeviceResidentLoader)
    _assert_same_batches(*loaders)


def _fit(train, resident, epochs=3, seed=0, ckpt_path=None, extra=()):
    L.seed_everything(seed, verbose=False)
    model = ImageClassifier(lr=0.05)
    dm = DynamicPruningDataModule(
        train,
        method=TED(),
        schedule=RollerCoasterSchedule(ratio=0.5, beta=0.5),
        batch_size=64,
        seed=0,
        device_resident=resident,
    )
    rec = EpochRecorder()
    trainer = make_trainer(epochs, callbacks=[TEDPruningCallback(), rec, *extra])
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return model, dm, rec


@pytest.mark.slow
def test_fit_on_the_device_path_trains_the_same_model_as_the_standard_path(mnist_train):
    train = subset(mnist_train, 1200)
    std_model, std_dm, std_rec = _fit(train, resident=False)
    dev_model, dev_dm, dev_rec = _fit(train, resident=True)
    assert std_dm.kept_history[2] < len(train)  # a pruned epoch was trained
    for epoch in std_rec.seen:
        assert torch.equal(torch.cat(dev_rec.seen[epoch]), torch.cat(std_rec.seen[epoch]))
        assert torch.equal(torch.cat(dev_rec.weights[epoch]), torch.cat(std_rec.weights[epoch]))
    for a, b in zip(std_model.parameters(), dev_model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(std_dm.state.score, dev_dm.state.score)


@pytest.mark.slow
def test_device_path_resumes_mid_epoch_without_repeating_or_skipping(mnist_train, tmp_path):
    train, mid = subset(mnist_train, 1200), 4
    ckpt = tmp_path / "mid.ckpt"
    full_model, full_dm, full_rec = _fit(train, resident=True, extra=[SaveAt(ckpt, 2, mid)])
    saved = torch.load(ckpt, weights_only=True)
    assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 2, "batches": mid + 1}]
    model, dm, rec = _fit(train, resident=True, seed=123, ckpt_path=ckpt)
    assert torch.equal(torch.cat(rec.seen[2]), torch.cat(full_rec.seen[2][mid + 1 :]))
    assert torch.equal(torch.cat(rec.weights[2]), torch.cat(full_rec.weights[2][mid + 1 :]))
    for a, b in zip(full_model.parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(dm.state.score, full_dm.state.score)


def test_automatic_only_for_a_tensor_dataset_on_an_accelerator():
    on_cpu = _dataset(4)
    on_meta = TensorDataset(torch.empty(4, 3, device="meta"), torch.empty(4, dtype=torch.int64, device="meta"))
    assert not wants_device_resident(None, on_cpu, None)
    assert wants_device_resident(None, on_meta, None)
    assert not wants_device_resident(None, on_meta, lambda items: items)  # a custom collate keeps the standard path
    assert not wants_device_resident(False, on_meta, None)
    assert wants_device_resident(True, on_cpu, None)
    assert not wants_device_resident(None, [1, 2, 3], None)


def test_device_resident_with_a_dataset_that_is_not_a_tensor_dataset_is_refused():
    dm = DynamicPruningDataModule(
        [torch.zeros(2)] * 8, schedule=ConstantSchedule(max_epochs=2), batch_size=4, device_resident=True
    )
    dm.setup("fit")
    with pytest.raises(TypeError, match="device_resident=True needs the training set to be a torch TensorDataset"):
        dm.train_dataloader()


def test_device_resident_with_workers_is_refused():
    with pytest.raises(ValueError, match="num_workers=2, which would have no work to do"):
        DynamicPruningDataModule(_dataset(8), batch_size=4, num_workers=2, device_resident=True)


def test_device_resident_with_a_custom_collate_is_refused():
    with pytest.raises(ValueError, match="a custom collate_fn, which cannot run there"):
        DynamicPruningDataModule(_dataset(8), batch_size=4, collate_fn=lambda items: items, device_resident=True)
