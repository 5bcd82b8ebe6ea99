"""Centred injection: the oracle receives ``v - mean(layer)``; every injecting path agrees,
training computes the mean from its rows and saves it, and a missing mean fails clearly."""

from __future__ import annotations

import json

import pytest
import torch
from datasets import Dataset

from oracle.centering import MEAN_FILE, center, load_means, save_means
from oracle.config import OracleConfig
from oracle.errors import OracleConfigError, OracleInputError
from oracle.oracle import ActivationOracle
from tests.helpers import MESSAGES, make_oracle_dir
from training import TrainConfig, train_oracle
from training.schema import make_row


def test_center_subtracts_in_the_vectors_dtype_and_keeps_the_gradient():
    v = torch.randn(3, 8, requires_grad=True)
    mean = torch.randn(8, dtype=torch.float64)
    out = center(v, mean)
    assert out.dtype == v.dtype
    torch.testing.assert_close(out, v - mean.float())
    out.sum().backward()
    assert v.grad is not None
    assert center(v, None) is v


def centred_copy(tmp_path, mean_scale: float = 3.0):
    """An oracle directory, and the same adapter declared centred with a random mean."""
    _, plain = make_oracle_dir(tmp_path / "plain", read_layers=(2,))
    config = json.loads((plain / "oracle_config.json").read_text())
    centred = tmp_path / "centred"
    centred.mkdir()
    for item in plain.iterdir():
        (centred / item.name).write_bytes(item.read_bytes())
    config["centered"] = True
    config["base_model"] = str((plain / config["base_model"]).resolve())
    (centred / "oracle_config.json").write_text(json.dumps(config))
    mean = torch.randn(config["d_model"], generator=torch.Generator().manual_seed(3)) * mean_scale
    save_means({2: mean}, centred)
    return plain, centred, mean


def test_a_centred_oracle_answers_as_the_plain_one_given_centred_vectors(tmp_path):
    plain_dir, centred_dir, mean = centred_copy(tmp_path)
    plain = ActivationOracle.load(oracle=plain_dir, device="cpu", dtype="fp32")
    centred = ActivationOracle.load(oracle=centred_dir, device="cpu", dtype="fp32")
    acts = plain.capture([MESSAGES[:2]], layers=[2])[0].activations[0]
    question = ["What persona is the assistant playing?"]
    expected = plain.answer([acts - mean], question, layer=2, max_new_tokens=6)
    assert centred.answer([acts], question, layer=2, max_new_tokens=6) == expected
    torch.testing.assert_close(
        torch.tensor(centred.p_yes([acts], question, layer=2)),
        torch.tensor(plain.p_yes([acts - mean], question, layer=2)),
    )
    # and centring changes what the oracle receives: without it the answer differs
    p_plain = plain.p_yes([acts], question, layer=2)[0]
    assert abs(p_plain - centred.p_yes([acts], question, layer=2)[0]) > 1e-4


def test_a_centred_oracle_without_its_mean_file_fails_naming_it(tmp_path):
    _, centred_dir, _ = centred_copy(tmp_path)
    (centred_dir / MEAN_FILE).unlink()
    with pytest.raises(OracleConfigError, match=MEAN_FILE):
        ActivationOracle.load(oracle=centred_dir, device="cpu")
    with pytest.raises(OracleConfigError, match="layer 5"):
        save_means({2: torch.zeros(8)}, tmp_path / "m")
        load_means(tmp_path / "m", [5], 8)


def test_a_centred_oracle_refuses_a_layer_it_has_no_mean_for(tmp_path):
    _, centred_dir, _ = centred_copy(tmp_path)
    ao = ActivationOracle.load(oracle=centred_dir, device="cpu")
    acts = ao.capture([MESSAGES[:2]], layers=[1])[0].activations[0]
    with pytest.raises(OracleInputError, match="means for layers"):
        ao.answer([acts], ["What persona?"], layer=1)


def test_training_saves_the_mean_of_the_read_positions_and_a_centred_config(tmp_path):
    from oracle.capture import hidden_at_layers
    from oracle.inputs import TargetInput, tokenize_input
    from oracle.models import load_model
    from oracle.positions import select_positions
    from oracle.tiny import save_tiny

    base = save_tiny(tmp_path / "base", "llama")
    texts = [f"Hello {w}, how is the sea today?" for w in ("pirate", "chef", "cat", "dog")]
    rows = [
        make_row("Which?", w, prompt=t, layer=2, positions="last:3", sample_positions=False)
        for t, w in zip(texts, ("pirate", "chef", "cat", "dog"), strict=True)
    ]
    config = TrainConfig(
        model=str(base),
        output_dir=str(tmp_path / "oracle"),
        max_steps=2,
        batch_size=2,
        read_layers=[2],
        center_activations=True,
        dtype="fp32",
    )
    out = train_oracle(config, Dataset.from_list(rows))
    saved = OracleConfig.load(out)
    assert saved.centered
    mean = load_means(out, [2], saved.d_model)[2]
    # independent ground truth: the read positions' block-2 outputs, averaged
    model, tok = load_model(str(base), dtype="fp32", device="cpu")
    vectors = []
    for text in texts:
        tokenized = tokenize_input(tok, TargetInput(prompt=text))
        ids = torch.tensor([tokenized.input_ids])
        hidden = hidden_at_layers(model, ids, None, [2])[2][0]
        vectors.append(hidden[select_positions(tokenized, "last:3")])
    torch.testing.assert_close(mean, torch.cat(vectors).mean(0), rtol=1e-4, atol=1e-5)
    assert json.loads((out / "metrics.json").read_text())["centered"] is True
