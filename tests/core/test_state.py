"""ScoreState under TED's update rule: first visit, Polyak averaging, duplicates, non-finite values, checkpoints."""

from __future__ import annotations

import io

import pytest
import torch

from lightning_ted.core.state import Column, Observations, ScoreState, gather_observations
from lightning_ted.methods import TED, FullData

INF = float("inf")


def _epoch(state: ScoreState, method, epoch: int, *batches) -> None:
    """Observe ``(indices, losses, terms)`` batches, then fold them in as the callback does at epoch end."""
    for indices, losses, terms in batches:
        state.observe(torch.tensor(indices), torch.tensor(losses), None if terms is None else torch.tensor(terms))
    method.update(state, state.take_pending(), epoch)
    assert state.num_pending == 0


def test_first_visit_sets_score_then_polyak():
    alpha = 0.7
    ted = TED(alpha=alpha)
    state = ScoreState(6)
    assert torch.isinf(state.score).all() and (state.seen == 0).all() and (state.last_epoch == -1).all()

    _epoch(state, ted, 0, ([0, 1, 2], [9.0, 9.0, 9.0], [0.5, -1.25, 2.0]), ([3], [9.0], [4.0]))
    expected = [0.5, -1.25, 2.0, 4.0, INF, INF]
    assert state.score.tolist() == pytest.approx(expected)  # TED scores by the Taylor term, not the loss
    assert state.seen.tolist() == [1, 1, 1, 1, 0, 0]
    assert state.last_epoch.tolist() == [0, 0, 0, 0, -1, -1]

    _epoch(state, ted, 1, ([1, 3, 4], [1.0, 1.0, 1.0], [3.0, -2.0, 7.5]))
    expected[1] = alpha * -1.25 + (1 - alpha) * 3.0
    expected[3] = alpha * 4.0 + (1 - alpha) * -2.0
    expected[4] = 7.5  # first visit: no averaging with +inf
    assert state.score.tolist() == pytest.approx(expected, rel=1e-6, abs=1e-6)
    assert state.seen.tolist() == [1, 2, 1, 2, 1, 0]
    assert state.last_epoch.tolist() == [0, 1, 0, 1, 1, -1]

    _epoch(state, ted, 2, ([1], [1.0], [0.0]))
    expected[1] = alpha * expected[1]
    assert state.score.tolist() == pytest.approx(expected, rel=1e-6, abs=1e-6)
    assert state.seen[1] == 3 and state.last_epoch[1] == 2


def test_alpha_zero_replaces_and_full_data_scores_losses():
    state = ScoreState(3)
    _epoch(state, TED(alpha=0.0), 0, ([0, 1], [1.0, 2.0], [5.0, 6.0]))
    _epoch(state, TED(alpha=0.0), 1, ([0], [1.0], [-3.0]))
    assert state.score.tolist() == pytest.approx([-3.0, 6.0, INF])

    state = ScoreState(3)
    _epoch(state, FullData(), 0, ([0, 2], [1.5, 2.5], None))  # no Taylor terms: the value is the loss
    assert state.score.tolist() == pytest.approx([1.5, INF, 2.5])


def test_duplicated_indices_count_once():
    ted = TED(alpha=0.5)
    state = ScoreState(5)
    # index 1 twice in one batch, index 3 in two batches of the same epoch: the first occurrence wins
    _epoch(state, ted, 0, ([1, 1, 2], [1.0, 1.0, 1.0], [2.0, 100.0, 3.0]), ([3, 0], [1.0, 1.0], [4.0, 1.0]))
    _epoch(state, ted, 0, ([3], [1.0], [-50.0]))  # a later epoch update for 3 does average
    assert state.seen.tolist() == [1, 1, 1, 2, 0]
    assert state.score.tolist() == pytest.approx([1.0, 2.0, 3.0, 0.5 * 4.0 + 0.5 * -50.0, INF])

    state = ScoreState(5)
    _epoch(state, ted, 0, ([4, 4, 4], [1.0, 1.0, 1.0], [8.0, 8.0, 8.0]))
    _epoch(state, ted, 1, ([4, 2, 4], [1.0, 1.0, 1.0], [2.0, 1.0, 2.0]))
    # one Polyak step (0.5 * 8 + 0.5 * 2 = 5), not two (0.5 * (0.5 * 8 + 0.5 * 2) + 0.5 * 2 = 3.5)
    assert state.score[4].item() == pytest.approx(5.0)
    assert state.seen[4] == 2


def test_nonfinite_observations_are_counted_and_ignored():
    ted = TED(alpha=0.5)
    state = ScoreState(6)
    _epoch(state, ted, 0, ([0, 1, 2], [1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    nan = float("nan")
    _epoch(
        state,
        ted,
        1,
        ([0, 1, 2, 3], [nan, 1.0, INF, 1.0], [5.0, nan, 5.0, -INF]),
        ([4, 5], [1.0, 1.0], [INF, 6.0]),
    )
    assert state.nonfinite_count == 5
    assert state.nonfinite_count == 5  # reading it does not reset or double it
    # only sample 5 was updated; 0..2 keep their old scores, 3 and 4 stay unscored
    assert state.score.tolist() == pytest.approx([1.0, 2.0, 3.0, INF, INF, 6.0])
    assert state.seen.tolist() == [1, 1, 1, 0, 0, 1]
    assert state.last_epoch.tolist() == [0, 0, 0, -1, -1, 1]
    assert torch.isfinite(state.score[[0, 1, 2, 5]]).all()

    _epoch(state, ted, 2, ([0], [nan], [1.0]))
    assert state.nonfinite_count == 6  # counts accumulate over epochs
    assert state.score[0].item() == pytest.approx(1.0)


def test_out_of_range_index_raises():
    state = ScoreState(4)
    state.observe(torch.tensor([1, 4]), torch.ones(2), torch.ones(2))
    with pytest.raises(IndexError, match="out of range"):
        TED().update(state, state.take_pending(), 0)


def test_empty_state_is_rejected():
    with pytest.raises(ValueError, match="empty"):
        ScoreState(0)


def _assert_same(a: ScoreState, b: ScoreState) -> None:
    assert torch.equal(a.score, b.score)
    assert torch.equal(a.seen, b.seen)
    assert torch.equal(a.last_epoch, b.last_epoch)
    assert torch.equal(a.pending().index, b.pending().index)
    assert torch.equal(a.pending().values, b.pending().values)
    assert a.nonfinite_count == b.nonfinite_count


def test_state_dict_round_trip_through_torch_save():
    ted = TED(alpha=0.25)
    state = ScoreState(8)
    _epoch(state, ted, 0, ([0, 1, 2, 3, 4], [1.0] * 5, [0.5, 1.5, float("nan"), -2.0, 3.0]))
    _epoch(state, ted, 1, ([1, 3, 6], [1.0] * 3, [1.0, 1.0, 9.0]))
    # observations buffered mid-epoch must survive too
    state.observe(torch.tensor([0, 7]), torch.tensor([2.0, INF]), torch.tensor([4.0, 1.0]))

    buf = io.BytesIO()
    torch.save(state.state_dict(), buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)

    restored = ScoreState(8)
    restored.load_state_dict(loaded)
    _assert_same(state, restored)
    assert restored.nonfinite_count == 2
    assert restored.num_pending == 2

    # both continue identically
    for s in (state, restored):
        s.observe(torch.tensor([5, 0]), torch.tensor([1.0, 1.0]), torch.tensor([-1.0, 2.0]))
        ted.update(s, s.take_pending(), 2)
    _assert_same(state, restored)
    assert state.seen[0] == 2  # buffered (0, 4.0) came first, the later (0, 2.0) is a duplicate


def test_state_dict_is_a_snapshot():
    state = ScoreState(3)
    _epoch(state, TED(), 0, ([0], [1.0], [2.0]))
    snapshot = state.state_dict()
    _epoch(state, TED(), 1, ([0, 1], [1.0, 1.0], [4.0, 5.0]))
    assert snapshot["score"].tolist() == pytest.approx([2.0, INF, INF])
    assert snapshot["seen"].tolist() == [1, 0, 0]


def test_load_into_a_different_size_raises():
    state = ScoreState(37)
    with pytest.raises(ValueError) as info:
        ScoreState(41).load_state_dict(state.state_dict())
    msg = str(info.value)
    assert "37" in msg and "41" in msg


def test_observations_pack_round_trip_is_bit_exact():
    index = torch.tensor([0, 2**40 + 3, -1, 7], dtype=torch.int64)
    values = torch.tensor([[1.5, -0.0], [float("nan"), 3e-39], [0.1, -2.0], [1e30, 7.0]], dtype=torch.float32)
    packed = Observations(index, values).pack()
    assert packed.dtype == torch.int32 and packed.shape == (4, 4)  # 16 bytes per observation
    back = Observations.unpack(packed)
    assert torch.equal(back.index, index)
    assert torch.equal(back.values.view(torch.int32), values.view(torch.int32))


def test_gather_pads_ranks_and_padding_never_scores():
    """Two fake ranks: rank 1 holds one row less; the -1 padding and a repeated sample count once."""
    rank0 = Observations(torch.tensor([0, 1, 2]), torch.tensor([[1.0, 10.0], [1.0, 11.0], [1.0, 12.0]]))
    rank1 = Observations(torch.tensor([3, 0]), torch.tensor([[1.0, 13.0], [1.0, 99.0]]))
    gathered_parts = []

    def fake_all_gather(t):
        gathered_parts.append(t)
        other = gather_observations(rank1, 3, lambda u: u.unsqueeze(0)).pack()  # what rank 1 contributes
        return torch.stack([t, other])

    obs = gather_observations(rank0, 3, fake_all_gather)
    assert len(gathered_parts) == 1  # one collective
    assert obs.index.tolist() == [0, 1, 2, 3, 0, -1]
    state = ScoreState(5)
    TED().update(state, obs, 0)
    assert state.score.tolist() == [10.0, 11.0, 12.0, 13.0, INF]  # sample 0's second (padded) visit skipped
    assert state.seen.tolist() == [1, 1, 1, 1, 0]
    with pytest.raises(RuntimeError, match="shard holds at most 2"):
        gather_observations(rank0, 2, fake_all_gather)


def test_method_columns_are_allocated_checkpointed_and_restored_by_name():
    """A method declares its per-sample columns; the state allocates them (with their fill and dtype), and a
    checkpoint restores each by name into a fresh state."""
    columns = (Column("loss_mean"), Column("visits_correct", dtype=torch.int32, fill=-1))
    state = ScoreState(5, columns=columns)
    assert state.columns["loss_mean"].dtype == torch.float32 and state.columns["visits_correct"].tolist() == [-1] * 5
    assert state.nbytes() == 5 * (4 + 4 + 4 + 4 + 4)
    state.columns["loss_mean"][2] = 3.5
    buffer = io.BytesIO()
    torch.save(state.state_dict(), buffer)
    buffer.seek(0)
    restored = ScoreState(5, columns=columns)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.columns["loss_mean"].tolist() == [0.0, 0.0, 3.5, 0.0, 0.0]
    assert torch.equal(restored.columns["visits_correct"], state.columns["visits_correct"])


def test_checkpoint_written_before_columns_had_names_restores_the_one_column():
    """Older checkpoints stored a method's single extra column as ``aux``: it loads into the one column."""
    saved = ScoreState(3, columns=(Column("loss_variance"),)).state_dict()
    saved.pop("columns")
    saved["aux"] = torch.tensor([1.0, 2.0, 3.0])
    state = ScoreState(3, columns=(Column("loss_variance"),))
    state.load_state_dict(saved)
    assert state.columns["loss_variance"].tolist() == [1.0, 2.0, 3.0]


def test_user_resumes_a_checkpoint_another_method_wrote_is_told_which_column_is_missing():
    saved = ScoreState(3).state_dict()  # TED keeps no column of its own
    with pytest.raises(ValueError, match="no 'loss_mean' column.*Resume with the method that wrote"):
        ScoreState(3, columns=(Column("loss_mean"),)).load_state_dict(saved)


def test_method_declaring_two_columns_of_one_name_is_refused():
    with pytest.raises(ValueError, match="two per-sample columns of one name"):
        ScoreState(3, columns=(Column("a"), Column("a")))
