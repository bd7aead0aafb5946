"""The streamed path (issue 25): pruning over litdata's StreamingDataset and id-column iterables through
``Trainer.fit``, on a small dataset written with ``litdata.optimize`` in the test."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import rank_results, run_worker
from stream_helpers import N_SAMPLES, fit_streamed, make_item, optimize_dataset
from test_resume import SaveAt
from torch.utils.data import IterableDataset, get_worker_info

from lightning_ted import DynamicPruningDataModule, InfoBatch
from lightning_ted.research import TEDVariant

litdata = pytest.importorskip("litdata")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def optimized(tmp_path_factory):
    return optimize_dataset(tmp_path_factory.mktemp("litdata") / "train")


def _streaming(path, shuffle=True):
    return litdata.StreamingDataset(str(path), shuffle=shuffle, seed=7)


def _check_each_kept_sample_once(dm, rec, epochs):
    for epoch in range(epochs):
        trained, kept = rec.trained(epoch), rec.kept[epoch]
        assert trained.numel() == kept.numel() == int(dm.kept_history[epoch])  # none twice, none missing
        assert torch.equal(trained.sort().values, kept.sort().values)
        # the index each sample carries is the dataset's own id, and its weight is the selection's
        assert torch.equal(torch.cat(rec.ids[epoch]), torch.cat(rec.seen[epoch]))
        weights = torch.zeros(N_SAMPLES)
        weights[kept] = rec.kept_weights[epoch]
        assert torch.equal(torch.cat(rec.weights[epoch]), weights[trained])


def test_streaming_dataset_trains_each_kept_sample_once_per_epoch(optimized):
    epochs = 4
    dm, rec, trainer, _ = fit_streamed(_streaming(optimized), epochs=epochs)
    assert dm.stream_source is not None  # the default for a StreamingDataset is the streamed path
    _check_each_kept_sample_once(dm, rec, epochs)
    assert int(dm.kept_history[1:].max()) < N_SAMPLES  # the pruning epochs really prune
    steps = sum(math.ceil(int(k) / 32) for k in dm.kept_history)
    assert trainer.global_step == steps == dm.total_optimizer_steps()  # no extra steps without workers
    assert torch.isfinite(dm.state.score).all()


def test_streamed_path_keeps_and_scores_like_the_map_style_path(optimized):
    """With lr = 0 the losses do not depend on the training order, so both paths must select the same
    samples every epoch and end with the same scores and step counts."""
    runs = {}
    for stream in (True, False):
        runs[stream] = fit_streamed(_streaming(optimized), epochs=4, method=InfoBatch(), lr=0.0, stream=stream)
    (s_dm, s_rec, s_tr, _), (m_dm, m_rec, m_tr, _) = runs[True], runs[False]
    assert m_dm.stream_source is None  # stream=False: read by index through the map-style loader
    for epoch in range(4):
        assert torch.equal(s_rec.kept[epoch].sort().values, m_rec.kept[epoch].sort().values)
        assert torch.equal(s_rec.trained(epoch).sort().values, m_rec.trained(epoch).sort().values)
    assert torch.equal(s_dm.kept_history, m_dm.kept_history)
    assert torch.allclose(s_dm.state.score, m_dm.state.score, rtol=1e-5, atol=1e-6)
    assert torch.equal(s_dm.state.seen, m_dm.state.seen)
    assert s_tr.global_step == m_tr.global_step  # the same optimizer steps saved


def test_streamed_path_with_workers_trains_each_kept_sample_once(optimized):
    epochs = 3
    dm, rec, trainer, _ = fit_streamed(_streaming(optimized), epochs=epochs, num_workers=2)
    _check_each_kept_sample_once(dm, rec, epochs)
    # the workers' last partial batches are batched together: the map-style path's step count
    steps = sum(math.ceil(int(k) / 32) for k in dm.kept_history[:epochs])
    assert trainer.global_step == steps == dm.total_optimizer_steps()


@pytest.mark.parametrize("workers", [0, 2])
def test_mid_epoch_resume_matches_the_uninterrupted_run(optimized, tmp_path, workers):
    ckpt = tmp_path / "mid.ckpt"
    full_dm, full, _, full_model = fit_streamed(
        _streaming(optimized), epochs=3, num_workers=workers, callbacks=[SaveAt(ckpt, 1, 3)]
    )
    dm, again, _, model = fit_streamed(_streaming(optimized), epochs=3, num_workers=workers, ckpt_path=ckpt, seed=5)
    trained_before = torch.cat(full.seen[1][:4])
    # the resumed epoch trains exactly what the interrupted one had not, in the same order
    assert torch.equal(torch.cat(again.seen[1]), torch.cat(full.seen[1])[trained_before.numel() :])
    assert torch.equal(torch.cat(again.seen[2]), torch.cat(full.seen[2]))
    assert torch.equal(dm.state.score, full_dm.state.score)
    assert torch.equal(dm.state.seen, full_dm.state.seen)
    assert torch.equal(dm.kept_history, full_dm.kept_history)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), full_model.parameters(), strict=True))


class _IdStream(IterableDataset):
    """An iterable dataset with a length whose items carry their id; splits itself across workers."""

    def __init__(self, n: int, split_workers: bool = True) -> None:
        self.n, self.split_workers = n, split_workers

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        info = get_worker_info()
        start, step = (info.id, info.num_workers) if info is not None and self.split_workers else (0, 1)
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(3)).tolist()
        for i in order[start::step]:
            yield make_item(i)


@pytest.mark.parametrize("workers", [0, 2])
def test_iterable_dataset_with_an_id_column_trains_each_kept_sample_once(workers):
    dm, rec, _, _ = fit_streamed(_IdStream(N_SAMPLES), epochs=3, id_column="id", num_workers=workers)
    _check_each_kept_sample_once(dm, rec, 3)


def test_user_streams_an_iterable_without_worker_split_with_workers():
    with pytest.raises(RuntimeError, match="get_worker_info"):
        fit_streamed(_IdStream(N_SAMPLES, split_workers=False), epochs=1, id_column="id", num_workers=2)


class _RepeatedId(_IdStream):
    """``_IdStream`` whose item at stream position ``at`` carries the first item's id (its own id is lost)."""

    def __init__(self, n: int, at: int) -> None:
        super().__init__(n)
        self.at = at

    def __iter__(self):
        first = None
        for k, item in enumerate(super().__iter__()):
            first = item["id"] if first is None else first
            if k == self.at:
                item["id"] = first
            yield item


@pytest.mark.parametrize("at", [1, 40], ids=["in-one-batch", "across-batches"])
def test_user_streams_an_iterable_whose_ids_repeat(at):
    data = _RepeatedId(N_SAMPLES, at)
    first = next(iter(_IdStream(N_SAMPLES)))["id"]
    with pytest.raises(RuntimeError, match=f"_RepeatedId yielded sample id {first} twice") as err:
        fit_streamed(data, epochs=1, id_column="id")
    assert "unique" in str(err.value) and f"[0, {N_SAMPLES})" in str(err.value)


class _NoLength(IterableDataset):
    def __iter__(self):
        yield from (make_item(i) for i in range(10))


def test_user_passes_an_iterable_dataset_without_ids():
    with pytest.raises(TypeError, match="litdata") as err:
        DynamicPruningDataModule(_IdStream(10))
    assert "id_column" in str(err.value)


def test_user_passes_an_iterable_dataset_without_length():
    with pytest.raises(TypeError, match="__len__") as err:
        DynamicPruningDataModule(_NoLength(), id_column="id")
    assert "StreamingDataset" in str(err.value)


def test_user_names_an_id_column_that_the_items_lack():
    with pytest.raises(KeyError, match="id_column='sample'"):
        fit_streamed(_IdStream(N_SAMPLES), epochs=1, id_column="sample")


def test_user_streams_with_drop_last(optimized):
    with pytest.raises(ValueError, match="drop_last=True"):
        fit_streamed(_streaming(optimized), epochs=1, drop_last=True)


def test_user_debugs_a_streamed_run_with_limit_train_batches(optimized):
    with pytest.raises(ValueError, match="stream=False"):
        fit_streamed(_streaming(optimized), epochs=1, trainer_kwargs={"limit_train_batches": 3})


def test_user_resumes_a_streamed_epoch_with_other_workers(optimized, tmp_path):
    ckpt = tmp_path / "mid.ckpt"
    fit_streamed(_streaming(optimized), epochs=2, callbacks=[SaveAt(ckpt, 1, 2)])
    with pytest.raises(ValueError, match="num_workers"):
        fit_streamed(_streaming(optimized), epochs=2, num_workers=2, ckpt_path=ckpt)


# ---------------------------------------------------------------- DDP on 2 CPU processes
def _launch_ddp(data, out, devices=2, workers=0) -> list[dict]:
    out.mkdir()
    run_worker(Path(__file__).resolve().parent / "stream_ddp_worker.py", data, out, devices, workers)
    return rank_results(out, devices)


@pytest.mark.ddp
def test_ddp_trains_each_kept_sample_on_exactly_one_rank(optimized, tmp_path):
    r0, r1 = _launch_ddp(optimized, tmp_path / "ddp")
    assert r0["world_size"] == 2 and r0["steps"] == r1["steps"]  # zero-weight batches keep the ranks in step
    for epoch, kept in r0["kept"].items():
        assert torch.equal(kept, r1["kept"][epoch])  # every rank holds the same selection
        trained = [r["seen"][epoch][r["weights"][epoch] > 0] for r in (r0, r1)]
        union = torch.cat(trained)
        assert union.numel() == kept.numel()  # none twice (on one rank or across ranks)
        assert torch.equal(union.sort().values, kept.sort().values)  # none missing
        for r in (r0, r1):  # padding: index -1 and weight 0 only
            pad = r["weights"][epoch] == 0
            assert torch.all(r["seen"][epoch][pad] == -1)
    assert int(r0["kept_history"][1]) < N_SAMPLES
    # litdata splits this dataset 288 / 312 between the ranks in epoch 0, so one rank ran a zero-weight batch
    assert any(bool((r["weights"][e] == 0).any()) for r in (r0, r1) for e in r0["kept"])
    assert torch.equal(r0["score"], r1["score"])  # bit-identical scores after every sync
    kept_counts = torch.zeros_like(r0["seen_count"])
    for kept in r0["kept"].values():
        kept_counts[kept] += 1
    assert torch.equal(r0["seen_count"], kept_counts)  # padding never entered the scores


def test_user_wraps_a_datamodule_whose_train_loader_streams(optimized):
    import lightning as L

    class Streams(L.LightningDataModule):
        def train_dataloader(self):
            return litdata.StreamingDataLoader(_streaming(optimized), batch_size=32)

    with pytest.raises(TypeError, match="directly") as err:
        fit_streamed(None, epochs=1, datamodule=Streams())
    assert "StreamingDataset" in str(err.value) and "id_column" in str(err.value)


def test_the_pruned_reference_reads_pruned_samples_of_a_streaming_dataset(optimized):
    method = TEDVariant(reference="pruned", reference_size=64)
    dm, rec, _, _ = fit_streamed(_streaming(optimized), epochs=3, method=method)
    epoch, grad_w, _ = dm.method.references.pruned
    assert epoch == 2 and grad_w is not None and torch.isfinite(grad_w).all()  # read by index from litdata
    _check_each_kept_sample_once(dm, rec, 3)


def test_user_asks_the_pruned_reference_of_an_id_column_iterable():
    with pytest.raises(TypeError, match="reference='batch'"):
        fit_streamed(_IdStream(N_SAMPLES), epochs=2, id_column="id", method=TEDVariant(reference="pruned"))
