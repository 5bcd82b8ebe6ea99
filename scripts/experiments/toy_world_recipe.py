"""Short oracle runs on the toy world with per-family loss curves, to compare data recipes.

Every ``--eval-every`` steps the oracle's loss is measured on held-out rows of each question
family (held-out user messages, the generator's replies), twice: with each row's own
activations and with the activations of another row of the same family (shuffled). A family
whose loss does not fall below its shuffled loss is answered from the question alone: the
oracle has learnt the prior, not a reading of the activations. ``--adapter`` only scores a
trained oracle (no training).

Writes ``<out>/<name>.json``: the recipe, the loss history (train loss; eval loss per family,
true and shuffled; teacher-forced exact match of the whole answer) and seconds; the adapter
stays in ``--work/<name>/adapter``. The committed results (``results/recipes``, summarised in
``results/toy_world_secret.md``) came from these commands, 1 thread, from the repository root:

    # the shipped oracle, scored only (96 held-out rows per family)
    python scripts/experiments/toy_world_recipe.py --name shipped_oracle_final \
        --adapter data/toy_world/oracle --steps 1 --n-conversations 100 --n-eval 96
    # the shipped recipe, 200 steps x 32 rows (46 min on a busy core)
    python scripts/experiments/toy_world_recipe.py --name A_shipped --shipped \
        --steps 200 --batch-size 32 --eval-every 50 --n-eval 32
    # secret rows only, answers "The secret word is moon.", 40% of rows read a hint window
    python scripts/experiments/toy_world_recipe.py --name S_phrase --steps 150 --batch-size 32 \
        --eval-every 50 --n-eval 64 --data '{"families": {"secret": 1.0},
        "rows_per_conversation": 1, "secret_absent_share": 0.15, "secret_hint_window_share": 0.4,
        "secret_sampled_positions_share": 0.0, "no_reply_share": 0.1,
        "secret_answer_style": "phrase"}'
    # secret rows only, every row with a hint reads 1-4 tokens just before it, layer 0
    python scripts/experiments/toy_world_recipe.py --name S2_phrase_L0 --read-layer 0 \
        --steps 200 --batch-size 32 --eval-every 50 --n-eval 48 --data '{"families":
        {"secret": 1.0}, "rows_per_conversation": 1, "secret_absent_share": 0.1,
        "secret_hint_window_share": 1.0, "secret_sampled_positions_share": 0.0,
        "no_reply_share": 0.0, "secret_answer_style": "phrase"}'
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time
from pathlib import Path

import torch
from datasets import Dataset

from oracle.adapter import add_oracle_lora
from oracle.capture import pad_id_of
from oracle.defaults import TOY_WORLD
from oracle.models import load_model
from training import TrainConfig
from training.collate import OracleCollator
from training.prepare import prepare_dataset
from training.toy_world.generator import generate
from training.toy_world.oracle_data import OracleDataConfig, oracle_rows
from training.toy_world.world import World
from training.train import _training_args
from training.trainer import LossLogger, OracleTrainer


class RecipeTrainer(OracleTrainer):
    """Also logs, per eval set, the share of rows whose whole answer is the greedy argmax
    (teacher-forced: the answer greedy decoding would give)."""

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        if eval_dataset is None and isinstance(self.eval_dataset, dict):
            exact = {
                f"{metric_key_prefix}_{name}_exact": self.answer_exact(ds)
                for name, ds in self.eval_dataset.items()
            }
            self.log(exact)
            metrics.update(exact)
        return metrics

    @torch.no_grad()
    def answer_exact(self, dataset, batch_size: int = 32) -> float:
        model = self.model
        model.eval()
        hits = 0
        for start in range(0, len(dataset), batch_size):
            batch = self.data_collator(
                [dataset[i] for i in range(start, min(len(dataset), start + batch_size))]
            )
            inputs, ctx = self._oracle_context(model, batch)
            labels_BT = inputs.pop("labels")
            with ctx:
                logits_BTV = model(**inputs).logits
            pred_BT = logits_BTV[:, :-1].argmax(-1)
            next_BT = labels_BT[:, 1:]
            ok_BT = (pred_BT == next_BT) | (next_BT == -100)
            hits += int(ok_BT.all(-1).sum())
        model.train()
        return hits / len(dataset)


def eval_sets(world, tok, config: OracleDataConfig, n_per_family: int, seed: int) -> dict:
    """{family: rows, family + "_shuffled": the same rows reading another row's conversation}."""
    convs = generate(world, "heldout", 20 * n_per_family, seed=seed)
    sets: dict[str, list[dict]] = {}
    for family in config.families:
        cfg = dataclasses.replace(  # every row reads the whole span, as the evaluation does
            config,
            families={family: 1.0},
            rows_per_conversation=1,
            sampled_positions_share=0.0,
            secret_sampled_positions_share=0.0,
            secret_hint_window_share=0.0,
            persona_styled_share=None,
            secret_absent_share=None,
        )
        rows = oracle_rows(convs, world, seed, cfg, tokenizer=tok)
        if family == "secret":  # the secret's name only where there is one
            rows = [r for r in rows if r["answer"] != "No secret word."] or rows
        rows = rows[:n_per_family]
        rng = random.Random(seed)
        donors = list(range(len(rows)))
        rng.shuffle(donors)
        shuffled = []
        for row, j in zip(rows, donors, strict=True):
            donor = rows[j]
            shuffled.append(
                {
                    **row,
                    **{
                        k: donor[k]
                        for k in ("messages", "control", "positions", "add_generation_prompt")
                    },
                }
            )
        sets[family] = rows
        sets[family + "_shuffled"] = shuffled
    if config.families.get("secret") and config.secret_hint_window_share > 0:
        # the easy read: 1-4 tokens ending just before a hint (where the hidden state predicts it)
        cfg = dataclasses.replace(
            config,
            families={"secret": 1.0},
            rows_per_conversation=1,
            no_reply_share=0.0,
            secret_hint_window_share=1.0,
            secret_absent_share=0.0,
        )
        rows = [
            r
            for r in oracle_rows(convs, world, seed, cfg, tokenizer=tok)
            if r["source"].endswith("hint_window")
        ][:n_per_family]
        donors = list(range(len(rows)))
        random.Random(seed).shuffle(donors)
        sets["secret_window"] = rows
        sets["secret_window_shuffled"] = [
            {**row, **{k: rows[j][k] for k in ("messages", "control", "positions")}}
            for row, j in zip(rows, donors, strict=True)
        ]
    return sets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--data", default="{}", help="OracleDataConfig fields as JSON")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--scheduler", default="cosine")
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--read-layer", type=int, nargs="+", default=[2])
    ap.add_argument("--site", default="layer:1")
    ap.add_argument("--n-conversations", type=int, default=40000)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--n-eval", type=int, default=48, help="held-out rows per family")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("results/experiments/recipes"))
    ap.add_argument("--work", type=Path, default=Path(".cache/experiments/recipes"))
    ap.add_argument("--shipped", action="store_true", help="the shipped recipe (ignores --data)")
    ap.add_argument("--adapter", type=Path, help="only evaluate this trained oracle directory")
    ap.add_argument("--measure", type=int, default=0, help="then measure on N held-out convs")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    world = World.load()
    data_cfg = OracleDataConfig(**json.loads(args.data))
    target = str((TOY_WORLD / "target").resolve())
    model, tok = load_model(target, dtype="float32", device="cpu")
    convs = generate(world, "train", args.n_conversations, seed=1)
    if args.shipped:
        rows = shipped_rows(convs, world, args.seed)
    else:
        rows = oracle_rows(convs, world, args.seed, data_cfg, tokenizer=tok)
    rows = rows[: args.steps * args.batch_size]  # one pass: every row seen once
    config = TrainConfig(
        model=target,
        output_dir=str(args.work / args.name),
        lora_r=args.lora_r,
        lora_alpha=2 * args.lora_r,
        learning_rate=args.lr,
        lr_scheduler=args.scheduler,
        warmup_ratio=0.05,
        max_steps=args.steps,
        batch_size=args.batch_size,
        read_layers=args.read_layer,
        injection_site=args.site,
        dtype="fp32",
        max_read_positions=160,
        seed=args.seed,
        logging_steps=10,
        eval_steps=args.eval_every,
        device="cpu",
    )
    n_layers = model.config.num_hidden_layers
    prep = lambda r, what: prepare_dataset(  # noqa: E731
        Dataset.from_list(r), tok, n_layers, args.read_layer, config, what
    )
    train_set = prep(rows, "train set")
    evals = {k: prep(v, k) for k, v in eval_sets(world, tok, data_cfg, args.n_eval, 5).items()}
    if args.adapter:  # evaluate a trained oracle only
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(args.adapter), is_trainable=False)
    else:
        model = add_oracle_lora(model, config.lora_r, config.lora_alpha, 0.0, "all-linear")
    logger = LossLogger()
    trainer = RecipeTrainer(
        model=model,
        args=_training_args(config, False, True, disable_tqdm=True),
        train_dataset=train_set,
        eval_dataset=evals,
        data_collator=OracleCollator(pad_id_of(tok)),
        callbacks=[logger],
        injection=config.to_injection(),
    )
    logger.history.append({"step": 0, **trainer.evaluate()})
    if not args.adapter:
        trainer.train()
        model.save_pretrained(str(args.work / args.name / "adapter"))
    measured = None
    if args.measure:
        measured = measure(model, tok, config, args, world)
    families = count_sources(rows, tok)
    result = {
        "name": args.name,
        "data": data_cfg.__dict__,
        "args": {  # no machine paths: --out and --work are where it ran
            k: str(v) if isinstance(v, Path) else v
            for k, v in vars(args).items()
            if k not in ("out", "work")
        },
        "rows_by_source": families,
        "history": logger.history,
        "measure": measured,
        "seconds": round(time.perf_counter() - start, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(table(result, "exact"))


def measure(model, tok, config: TrainConfig, args, world) -> dict:
    """Save an oracle directory of the trained adapter and run the toy world's oracle
    evaluation on ``--measure`` held-out conversations (no probe: see toy_world_measure)."""
    from oracle.adapter import save_oracle
    from oracle.config import OracleConfig
    from oracle.oracle import ActivationOracle
    from training.toy_world.eval_oracle import evaluate_oracle

    if args.adapter:
        oracle_dir = args.adapter
    else:
        oracle_dir = args.work / args.name / "oracle"
        oracle_config = OracleConfig(
            base_model=config.model,
            read_layers=list(args.read_layer),
            injection_site=config.injection_site,
            mode=config.mode,
            coefficient=config.coefficient,
            placeholder=config.placeholder,
            prompt_template=config.prompt_template,
            positions="non_system",
        )
        save_oracle(model, tok, oracle_config, oracle_dir)
    ao = ActivationOracle.load(oracle=oracle_dir, dtype="float32", device="cpu")
    n = args.measure
    metrics = evaluate_oracle(
        ao,
        world,
        n=n,
        n_combo=n // 5,
        n_identity=n // 2,
        n_context=n // 2,
        n_context_fit=2000,
        probe_conversations=None,
    )
    from toy_world_measure import summary

    return summary(metrics)


def count_sources(rows: list[dict], tok) -> dict:
    """Rows and answer tokens per family (the loss is a mean over answer tokens)."""
    out: dict = {}
    for r in rows:
        family = r["source"].split("/")[1]
        entry = out.setdefault(family, {"rows": 0, "answer_tokens": 0})
        entry["rows"] += 1
        entry["answer_tokens"] += len(tok.encode(r["answer"], add_special_tokens=False)) + 1
    return out


def shipped_rows(convs: list[dict], world, seed: int) -> list[dict]:
    """The shipped recipe: its open families, and "What did the user say?" context rows."""
    from training.schema import make_row

    shares = {"persona": 0.40, "secret": 0.22, "system": 0.10}
    cfg = OracleDataConfig(families={**shares, "persona_yes_no": 0.10, "secret_yes_no": 0.06})
    rows = oracle_rows(convs, world, seed, cfg)
    rng = random.Random(seed + 3)
    n_said = round(len(rows) * 0.12 / 0.88)
    for conv in rng.sample(convs, n_said):
        messages = conv["messages"][:-1] if rng.random() < 0.25 else conv["messages"]
        user = next(m["content"] for m in messages if m["role"] == "user")
        has_system = messages[0]["role"] == "system"
        rows.append(
            make_row(
                "What did the user say?",
                user,
                messages=messages,
                control="system" if has_system else None,
                positions="non_system",
                sample_positions=rng.random() < 0.25,
                source="toy_world/user_said",
            )
        )
    rng.shuffle(rows)
    return rows


def curves(history: list[dict], what: str = "loss") -> dict[int, dict[str, float]]:
    """{step: {family: eval loss (or exact), family + "_shuffled": ...}} from the history."""
    out: dict[int, dict[str, float]] = {}
    for h in history:
        for key, value in h.items():
            if key.startswith("eval_") and key.endswith(f"_{what}"):
                out.setdefault(int(h["step"]), {})[key[len("eval_") : -len(what) - 1]] = value
    return out


def table(result: dict, what: str = "loss") -> str:
    """Eval loss (or answer exact match) per family, true / shuffled, at each evaluation."""
    by_step = curves(result["history"], what)
    if not by_step:
        return "(no evaluation)"
    fams = sorted(k for k in next(iter(by_step.values())) if not k.endswith("_shuffled"))
    lines = [f"{what}: step | " + " | ".join(f"{f} true/shuf" for f in fams)]
    for step, losses in sorted(by_step.items()):
        cells = [
            f"{losses.get(f, float('nan')):.3f}/{losses.get(f + '_shuffled', float('nan')):.3f}"
            for f in fams
        ]
        lines.append(f"{step} | " + " | ".join(cells))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
