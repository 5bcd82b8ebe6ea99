"""``oracle toy-world build`` end to end at a tiny size: every stage runs, the result loads as an
oracle directory, and a second run skips the finished stages."""

from __future__ import annotations

import json
import shutil

import pytest

from worlds.toy.world import TOY_WORLD

TINY = {
    "seed": 0,
    "n_train": 300,
    "vocab_size": 1024,
    "eval_per_persona": 1,
    "suite_conversations": 6,
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
    from worlds.toy.build import STAGES, Build, BuildConfig

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
    # the suite stage wrote one suite file per family; the eval stage scored them with
    # oracle eval's code (its report beside the work files) and wrote metrics.json from it
    from evals.suite_format import load_suite_file
    from worlds.toy.suite import FAMILIES, suite_paths

    assert [p.name for p in suite_paths(out)] == [f"{f}.jsonl.xz" for f in FAMILIES]
    persona_items = load_suite_file(suite_paths(out)[0])
    assert len({i.group for i in persona_items if i.split == "test"}) == 6
    assert sum(i.split == "train" for i in persona_items) == 20  # the oracle's conversations
    metrics = json.loads((out / "metrics.json").read_text())
    results = json.loads((work / "evaluation" / "results.json").read_text())
    assert set(metrics["oracle"]) == set(FAMILIES) == set(results["suites"])
    for family, summary in metrics["oracle"].items():
        assert summary["verdict"] == results["suites"][family]["summary"]["verdict"]
        assert summary["headline"] == results["suites"][family]["summary"]["figures"]["headline"]
    assert 0.0 <= metrics["target"]["keep_persona"] <= 1.0
    readme = (out / "README.md").read_text()
    assert "| target | measured | should be |" in readme
    assert "| suite | verdict | metric |" in readme
    ao = ActivationOracle.load(oracle=out / "oracle", device="cpu")
    assert ao.config.default_layer == 2

    before = (work / "stages.json").read_text()
    Build(out, work, BuildConfig.from_dict(TINY), device="cpu", progress=False).run(list(STAGES))
    assert (work / "stages.json").read_text() == before  # nothing rerun
