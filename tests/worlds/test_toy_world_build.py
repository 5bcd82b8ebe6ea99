"""``oracle toy-world build`` end to end at a tiny size: every stage runs, the result loads as an
oracle directory, and a second run skips the finished stages."""

from __future__ import annotations

import json
import shutil

import pytest

from oracle.defaults import TOY_WORLD

TINY = {
    "seed": 0,
    "n_train": 300,
    "vocab_size": 1024,
    "eval_per_persona": 1,
    "eval_conversations": 5,
    "target": {
        "hidden_size": 128,
        "num_hidden_layers": 3,
        "num_attention_heads": 2,
        "intermediate_size": 256,
        "steps": 3,
        "batch_size": 4,
    },
    "oracle": {"max_steps": 2, "batch_size": 2, "n_conversations": 20, "lora_r": 4},
}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_build_all_stages_then_resume(tmp_path):
    from oracle.config import OracleConfig
    from oracle.oracle import ActivationOracle
    from training.toy_world.build import STAGES, Build, BuildConfig

    out, work = tmp_path / "world", tmp_path / "work"
    out.mkdir()
    for name in ("spec.json", "user_bank.json"):
        shutil.copy(TOY_WORLD / name, out / name)
    (out / "README.md").write_text("x\n<!-- metrics:start -->\n<!-- metrics:end -->\n")
    build = Build(out, work, BuildConfig.from_dict(TINY), device="cpu", progress=False)
    build.run(list(STAGES))

    assert set(build.done()) == set(STAGES)
    config = OracleConfig.load(out / "oracle")
    assert config.base_model == "../target" and config.read_layers == [2]
    assert config.positions == "non_system"
    assert not (out / "oracle" / "ckpt").exists()  # checkpoints stay in the work directory
    metrics = json.loads((out / "metrics.json").read_text())
    oracle = metrics["oracle"]
    assert 0.0 <= oracle["persona"] <= 1.0 and 0.0 <= oracle["secret_heldout_q"] <= 1.0
    assert 0.0 <= oracle["probe_secret"] <= 1.0  # the probe is fitted on the oracle's corpus
    assert {"exact", "f1"} <= set(oracle["context"]["train"]["all"])
    assert {"prior", "probe", "heldout"} <= set(oracle["context"])
    readme = (out / "README.md").read_text()
    assert "| oracle: persona, training wordings |" in readme
    assert "| measure | oracle | best constant | linear probe | target |" in readme
    ao = ActivationOracle.load(oracle=out / "oracle", device="cpu")
    assert ao.config.default_layer == 2

    before = (work / "stages.json").read_text()
    Build(out, work, BuildConfig.from_dict(TINY), device="cpu", progress=False).run(list(STAGES))
    assert (work / "stages.json").read_text() == before  # nothing rerun
