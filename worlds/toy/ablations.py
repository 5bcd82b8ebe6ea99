"""Train the ablation oracles: small toy-world oracles that each change one setting.

The documented command (run once, one training at a time; each takes about 6 minutes on 2 CPU
threads, 500 steps of 16 rows)::

    python -m worlds.toy.ablations --steps 500 --batch-size 16 --rows 4000   # every ablation
    python -m worlds.toy.ablations --only site_embedding  # one of them

Each oracle is written to ``data/toy_world/ablations/<name>/`` with an ``ablation.json`` that
says which axes it belongs to and the command that made it; ``oracle eval`` reads them (the
world's manifest names the folder) and never trains. Every ablation
uses the same recipe and persona QA data (from the toy world's train split), so they differ
only in the setting named:

============== ============================================================================
name           setting
============== ============================================================================
default        injection at block 1, norm-matched addition, read at 50% of depth
site_embedding injection at the embedding output instead of block 1
read_25        read at 25% of depth
read_75        read at 75% of depth
mode_replace   replacement (h <- v) instead of norm-matched addition
============== ============================================================================
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
from pathlib import Path

from worlds.toy.world import TOY_WORLD

log = logging.getLogger(__name__)

ABLATION_COMMAND = "python -m worlds.toy.ablations --steps 500 --batch-size 16 --rows 4000"
ABLATIONS_DIR = TOY_WORLD / "ablations"

# name -> (TrainConfig overrides, read-layer fraction, {axis: value shown in the plot})
ABLATIONS: dict[str, tuple[dict, float, dict[str, str]]] = {
    "default": (
        {},
        0.5,
        {"site": "layer:1", "read_layer": "50%", "mode": "add"},
    ),
    "site_embedding": ({"injection_site": "embedding"}, 0.5, {"site": "embedding"}),
    "read_25": ({}, 0.25, {"read_layer": "25%"}),
    "read_75": ({}, 0.75, {"read_layer": "75%"}),
    "mode_replace": ({"mode": "replace"}, 0.5, {"mode": "replace"}),
}


def layer_at(n_layers: int, fraction: float) -> int:
    """The block at ``fraction`` of depth, clipped to [0, n_layers - 1]."""
    return min(n_layers - 1, max(0, round(n_layers * fraction)))


def persona_rows(n: int, seed: int) -> list[dict]:
    """``n`` persona QA rows (training schema) from the toy world's train split."""
    from training.schema import make_row
    from worlds.toy import questions as Q
    from worlds.toy.generator import Generator
    from worlds.toy.world import World

    world = World.load()
    gen = Generator(world, "train", seed)
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        conv = gen.conversation()
        persona = conv["persona"]
        article = world.spec["personas"][persona]["article"] if persona else "a"
        answer = Q.persona_answer(persona, article)
        has_system = conv["messages"][0]["role"] == "system"
        rows.append(
            make_row(
                rng.choice(Q.PERSONA_QUESTIONS["train"]),
                answer,
                messages=conv["messages"],
                control="system" if has_system else None,
                positions="non_system" if has_system else "all",
                source="ablation_persona",
            )
        )
    return rows


def _relative(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(path.resolve(), start.resolve())


def train_ablation(
    name: str,
    steps: int,
    n_rows: int,
    seed: int,
    out_root: Path,
    target: Path = TOY_WORLD / "target",
    batch_size: int = 8,
) -> Path:
    """Train one ablation oracle into ``out_root/name`` (replacing it); returns its directory.

    The oracle's ``base_model`` is saved relative to its directory, so the committed files
    hold no machine path.
    """
    from datasets import Dataset

    from training import train_oracle
    from training.config import TrainConfig
    from training.train import count_layers

    overrides, fraction, axes = ABLATIONS[name]
    target = Path(target)
    layer = layer_at(count_layers(str(target)), fraction)
    out = out_root / name
    if out.exists():
        shutil.rmtree(out)
    config = TrainConfig(
        model=str(target),
        output_dir=str(out),
        lora_r=8,
        lora_alpha=16,
        learning_rate=3e-3,
        lr_scheduler="cosine",
        max_steps=steps,
        batch_size=batch_size,
        read_layers=[layer],
        seed=seed,
        logging_steps=25,
        **overrides,
    )
    train_oracle(config, Dataset.from_list(persona_rows(n_rows, seed)))
    shutil.rmtree(out / "ckpt", ignore_errors=True)
    # committed files hold no machine paths: point the oracle at the target relatively.
    for fname, key in (
        ("oracle_config.json", "base_model"),
        ("adapter_config.json", "base_model_name_or_path"),
    ):
        path = out / fname
        data = json.loads(path.read_text())
        data[key] = _relative(target, out)
        path.write_text(json.dumps(data, indent=2) + "\n")
    (out / "README.md").unlink(missing_ok=True)  # peft's model card names the absolute path
    tc_path = out / "training_config.json"
    tc = json.loads(tc_path.read_text())
    tc["model"], tc["output_dir"] = _relative(target, out), "."
    tc_path.write_text(json.dumps(tc, indent=2) + "\n")
    detail = f"read block {layer}, {overrides or 'default recipe'}, {steps} steps"
    info = {
        "axes": axes,
        "is_default": name == "default",
        "detail": detail,
        "command": ABLATION_COMMAND,
    }
    (out / "ablation.json").write_text(json.dumps(info, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> None:
    """Train the ablation oracles one after another (never in parallel: 2 CPU cores)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", action="append", choices=sorted(ABLATIONS), help="train only these (repeatable)"
    )
    parser.add_argument("--steps", type=int, default=500, help="optimizer steps per oracle")
    parser.add_argument("--rows", type=int, default=4000, help="persona QA rows in the train set")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, init and draws")
    parser.add_argument("--out", type=Path, default=ABLATIONS_DIR, help="where the oracles go")
    parser.add_argument("--batch-size", type=int, default=16, help="rows per step")
    parser.add_argument(
        "--target", type=Path, default=TOY_WORLD / "target", help="target model directory"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for name in args.only or list(ABLATIONS):
        log.info("training ablation %s", name)
        train_ablation(
            name, args.steps, args.rows, args.seed, args.out, args.target, args.batch_size
        )


if __name__ == "__main__":
    main()
