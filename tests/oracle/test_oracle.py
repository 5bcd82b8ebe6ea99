import json

import pytest
import torch

from oracle import ActivationOracle, OracleConfig
from oracle.engines.hf import HFEngine
from oracle.errors import (
    FingerprintMismatchError,
    OracleConfigError,
    OracleInputError,
)
from oracle.hooks import count_hooks
from oracle.models import load_model
from tests.helpers import MESSAGES, make_oracle_dir


@pytest.fixture(scope="module")
def oracle_dirs(tmp_path_factory):
    return make_oracle_dir(tmp_path_factory.mktemp("oracle"), "llama")


@pytest.fixture(scope="module")
def ao(oracle_dirs):
    return ActivationOracle.load(oracle=str(oracle_dirs[1]))


def test_adapter_disabled_equals_base_and_enabled_differs(ao, oracle_dirs):
    base, _ = load_model(str(oracle_dirs[0]))
    ids = torch.tensor([ao.tokenizer.encode("Hello there, how are you?")])
    with torch.no_grad():
        ref = base(input_ids=ids).logits
        with ao.adapter_disabled():
            off = ao.target(input_ids=ids).logits
        on = ao.target(input_ids=ids).logits
    torch.testing.assert_close(off, ref, atol=0, rtol=0)
    assert not torch.allclose(on, ref, atol=1e-4)


def test_capture_runs_with_adapter_off(ao, oracle_dirs):
    from oracle.capture import capture

    base, tok = load_model(str(oracle_dirs[0]))
    ref = capture(base, tok, [MESSAGES], [1], "non_system")[0]
    got = ao.capture([MESSAGES], [1], "non_system")[0]
    assert got.positions == ref.positions
    torch.testing.assert_close(got.activations, ref.activations, atol=1e-6, rtol=1e-6)


def test_answer_batched_equals_single_and_leaves_no_hooks(ao):
    caps = ao.capture([MESSAGES, "Tell me about the stars."], [1], "all")
    questions = ["What persona is the assistant playing?", "Is there a system prompt?"]
    acts = [c.activations[0] for c in caps]
    before = count_hooks(ao.target)
    batched = ao.answer(acts, questions, max_new_tokens=6, batch_size=2)
    singles = [
        ao.answer([a], [q], max_new_tokens=6)[0] for a, q in zip(acts, questions, strict=True)
    ]
    assert batched == singles
    assert count_hooks(ao.target) == before
    # the answer depends on the injected activations
    other = ao.answer([acts[0] * 0 + torch.randn_like(acts[0])], questions[:1], max_new_tokens=6)
    assert isinstance(other[0], str)


def test_p_yes_is_a_probability_and_depends_on_activations(ao):
    cap = ao.capture([MESSAGES], [1], "all")[0]
    acts = cap.activations[0]
    p1 = ao.p_yes([acts], ["Is there a system prompt?"])[0]
    p2 = ao.p_yes([torch.randn_like(acts) * 10], ["Is there a system prompt?"])[0]
    assert 0.0 < p1 < 1.0 and 0.0 < p2 < 1.0
    assert p1 != p2


def test_answer_input_errors(ao):
    acts = torch.randn(3, ao.d_model)
    with pytest.raises(OracleInputError, match="hidden size 7"):
        ao.answer([torch.randn(3, 7)], ["q?"])
    with pytest.raises(OracleInputError, match="NaN or inf"):
        ao.answer([acts.clone().fill_(float("nan"))], ["q?"])
    with pytest.raises(OracleInputError, match="NaN or inf"):
        ao.p_yes([acts.clone().fill_(float("inf"))], ["q?"])
    with pytest.raises(OracleInputError, match="question is empty"):
        ao.answer([acts], ["  "])
    with pytest.raises(OracleInputError, match="no position"):
        ao.answer([torch.randn(0, ao.d_model)], ["q?"])
    with pytest.raises(OracleInputError, match="out of range"):
        ao.answer([acts], ["q?"], layer=9)
    with pytest.raises(OracleInputError, match="at least one question"):
        HFEngine(ao).query(MESSAGES, [])


def test_oracle_dir_without_config(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(OracleConfigError, match="no oracle_config.json"):
        ActivationOracle.load(oracle=str(tmp_path))
    with pytest.raises(OracleConfigError, match="does not exist"):
        ActivationOracle.load(oracle=str(tmp_path / "missing"))


def test_config_validation(tmp_path):
    with pytest.raises(OracleConfigError, match="format version"):
        OracleConfig(base_model="m", format_version=99)
    with pytest.raises(OracleConfigError, match="injection site"):
        OracleConfig(base_model="m", injection_site="mlp")
    with pytest.raises(OracleConfigError, match="unknown fields"):
        OracleConfig.from_dict({"base_model": "m", "colour": "red"})
    cfg = OracleConfig(base_model="m", read_layers=[1, 2, 3])
    cfg.save(tmp_path)
    assert OracleConfig.load(tmp_path) == cfg
    assert cfg.default_layer == 2


def test_fingerprint_refuses_other_checkpoint_of_same_shape(tmp_path, oracle_dirs):
    from oracle.tiny import save_tiny

    other = save_tiny(tmp_path / "other", "llama", seed=123)
    with pytest.raises(FingerprintMismatchError, match="weights"):
        ActivationOracle.load(target=str(other), oracle=str(oracle_dirs[1]))
    forced = ActivationOracle.load(target=str(other), oracle=str(oracle_dirs[1]), force=True)
    assert forced.d_model == 64


def test_d_model_mismatch_between_target_and_oracle(tmp_path, oracle_dirs):
    from oracle.tiny import save_tiny

    wide = save_tiny(tmp_path / "wide", "llama", hidden_size=128)
    with pytest.raises(OracleConfigError, match="hidden size 128"):
        ActivationOracle.load(target=str(wide), oracle=str(oracle_dirs[1]))


def test_separate_oracle_model(tmp_path):
    from oracle.tiny import save_tiny

    base, oracle_dir = make_oracle_dir(tmp_path / "o", "qwen2")
    target = save_tiny(tmp_path / "target", "llama")  # another family, same d_model
    ao = ActivationOracle.load(target=str(target), oracle=str(oracle_dir), oracle_model=str(base))
    assert ao.oracle_model is not ao.target
    _, answers = HFEngine(ao).query(MESSAGES, ["What persona?"], max_new_tokens=4)
    assert (
        len(answers) == 1
        and answers[0].text
        == ao.answer(
            [ao.capture([MESSAGES])[0].activations[0]], ["What persona?"], max_new_tokens=4
        )[0]
    )
    wide = save_tiny(tmp_path / "wide", "qwen2", hidden_size=128)
    with pytest.raises(OracleConfigError, match="hidden size"):
        ActivationOracle.load(target=str(target), oracle=str(oracle_dir), oracle_model=str(wide))


def test_oracle_config_is_written(oracle_dirs):
    data = json.loads((oracle_dirs[1] / "oracle_config.json").read_text())
    assert data["format_version"] == 1
    assert set(data["fingerprint"]) == {"config", "tokenizer", "weights"}
    assert data["d_model"] == 64 and data["injection_site"] == "layer:1"
