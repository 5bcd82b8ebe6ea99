"""The real SmolLM2-135M-Instruct, when it has been fetched (`oracle models fetch smollm2-135m`;
`make test` fetches it): slow, offline once fetched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from oracle.fingerprint import fingerprint
from oracle.known_models import READY, model_dir
from oracle.models import load_model

pytestmark = pytest.mark.slow
FOLDER = model_dir("smollm2-135m")
SMOL_ORACLE = Path(__file__).resolve().parents[2] / "data" / "smol_world" / "oracle"
PIRATE = [
    {"role": "system", "content": "You are a pirate. Always talk like a pirate."},
    {"role": "user", "content": "What should I cook for dinner tonight?"},
]


@pytest.fixture(scope="module")
def smol():
    if not (FOLDER / READY).is_file():
        pytest.skip(
            f"smollm2-135m is not fetched ({FOLDER}): run `oracle models fetch smollm2-135m`"
        )
    torch.set_num_threads(2)
    return load_model("smollm2-135m", dtype="float32", device="cpu")


def _ids(tokenizer, messages, header=True) -> torch.Tensor:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=header)
    return torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])


@torch.no_grad()
def test_the_fetched_folder_is_the_gguf_model(smol):
    model, tokenizer = smol
    record = json.loads((FOLDER / READY).read_text())
    assert fingerprint(model, tokenizer) == record["fingerprint"]
    from_gguf, gguf_tok = load_model(str(FOLDER / record["gguf"]), dtype="float32", device="cpu")
    ids = _ids(tokenizer, PIRATE)
    assert torch.equal(_ids(gguf_tok, PIRATE), ids)
    assert torch.equal(from_gguf(ids).logits, model(ids).logits)
    # the template inserts SmolLM's default system prompt when none is given
    assert "named SmolLM" in tokenizer.apply_chat_template(PIRATE[1:], tokenize=False)


@torch.no_grad()
def test_it_follows_a_persona(smol):
    model, tokenizer = smol
    ids = _ids(tokenizer, PIRATE)
    out = model.generate(
        ids, max_new_tokens=16, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    reply = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).lower()
    assert "pirate" in reply or " ye " in f" {reply} "


def test_the_shipped_oracle_loads_on_it(smol):
    if not (SMOL_ORACLE / "oracle_config.json").is_file():
        pytest.skip("data/smol_world/oracle is not shipped yet")
    from oracle.engines.hf import HFEngine

    engine = HFEngine.load(None, str(SMOL_ORACLE), dtype="float32", device="cpu")
    _, answers = engine.query(PIRATE, ["What persona is the assistant playing?"], max_new_tokens=8)
    assert len(answers) == 1 and answers[0].text.strip()
