"""Score a training run's checkpoints on held-out SmolLM2-world items (a learning curve).

For a run directory (``oracle train --output-dir RUN``: checkpoints in ``RUN/ckpt``), every
``checkpoint-N`` whose step is a multiple of ``--every`` is loaded (the adapter only; the
target is loaded once and its activations captured once, since the adapter is off while it is
read) and asked a fixed sample of the suite's test items: persona and secret items of seen
personas (held-out users, held-out question wordings), items of personas never trained, and
context items. Each checkpoint also answers with activations shuffled across items of the
same family (a control that must fall to the answer prior; every third item). One JSON line per checkpoint goes
to ``--out`` (appended; a step already there is skipped), so a rerun or ``--watch`` resumes.

    python -m evals.experiments.smol_world_checkpoints --run RUN --layer 15 \
        --out RUN/curve.jsonl --watch
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from evals.experiments.smol_world_eval import correct, token_f1
from evals.suite_format import load_suite_file
from oracle.config import OracleConfig
from oracle.inputs import TargetInput
from oracle.oracle import ActivationOracle
from training.smol_world.world import SmolWorld

log = logging.getLogger("smol_world_checkpoints")
MAX_READ = 32  # the oracle is trained on at most the span's last 32 positions


def sample_items(
    suite: Path,
    n_persona: int,
    n_secret: int,
    n_none: int,
    n_context: int,
    n_unseen: int | None,
    seed: int = 0,
):
    """A fixed sample: persona items naming a seen persona, secret items naming a word,
    ``n_none`` items of each family whose answer is "No persona."/"No secret word.", every
    unseen-persona item (or ``n_unseen``) and context items."""
    items = [it for it in load_suite_file(suite) if it.split == "test"]
    rng = random.Random(seed)

    def pick(keep, n):
        chosen = [it for it in items if keep(it)]
        rng.shuffle(chosen)
        return chosen[:n]

    seen = lambda it: "unseen_persona" not in it.tags  # noqa: E731
    chosen = []
    for family, n in (("persona", n_persona), ("secret", n_secret)):
        chosen += pick(lambda it, f=family: it.family == f and seen(it) and it.label != "none", n)
        chosen += pick(lambda it, f=family: it.family == f and it.label == "none", n_none)
    unseen = [it for it in items if "unseen_persona" in it.tags and it.family == "persona"]
    chosen += unseen[:n_unseen]
    chosen += pick(lambda it: it.family.startswith("context"), n_context)
    return chosen


def as_dict(item) -> dict:
    return {
        "family": item.family,
        "label": item.label,
        "aliases": [item.label, *item.aliases],
        "gold": item.gold,
    }


def subsets(item) -> list[str]:
    """The subsets an item counts in."""
    if item.family.startswith("context"):
        return ["context"]
    if "unseen_persona" in item.tags:
        return ["persona/unseen"]
    out = [f"{item.family}/all"]
    if item.label != "none":
        out.append(f"{item.family}/named")
        if "text_reader_hidden" in item.tags:
            out.append(f"{item.family}/named_hidden")
    else:
        out.append(f"{item.family}/none")
    return out


def score(items, answers: list[str], world: SmolWorld) -> dict:
    groups: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        for name in subsets(it):
            groups.setdefault(name, []).append(i)
    out: dict = {}
    for name, idx in sorted(groups.items()):
        if name == "context":
            out["context_em"] = round(
                float(np.mean([correct(as_dict(items[i]), answers[i], world) for i in idx])), 4
            )
            out["context_f1"] = round(
                float(np.mean([token_f1(answers[i], items[i].gold) for i in idx])), 4
            )
            continue
        flags = [correct(as_dict(items[i]), answers[i], world) for i in idx]
        out[name] = round(float(np.mean(flags)), 4)
    return out


def checkpoints(run: Path, every: int) -> list[tuple[int, Path]]:
    found = []
    for path in (run / "ckpt").glob("checkpoint-*"):
        match = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if match and int(match.group(1)) % every == 0 and (path / "trainer_state.json").is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="oracle train --output-dir")
    parser.add_argument("--layer", type=int, required=True, help="the run's read layer")
    parser.add_argument("--target", default="smollm2-135m")
    parser.add_argument("--suite", type=Path, default=Path("data/smol_world/suite.jsonl"))
    parser.add_argument("--out", type=Path, required=True, help="JSONL, one line a checkpoint")
    parser.add_argument("--every", type=int, default=100, help="score steps that are multiples")
    parser.add_argument("--n-persona", type=int, default=50, help="items naming a persona")
    parser.add_argument("--n-secret", type=int, default=40, help="items naming a secret word")
    parser.add_argument("--n-none", type=int, default=10, help="'No persona.' items (and secret)")
    parser.add_argument("--n-context", type=int, default=16)
    parser.add_argument("--n-unseen", type=int, default=None, help="default: every one")
    parser.add_argument("--watch", action="store_true", help="poll for new checkpoints")
    parser.add_argument("--until", type=int, default=None, help="with --watch: stop after it")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    from peft import PeftModel

    world = SmolWorld.load()
    items = sample_items(
        args.suite, args.n_persona, args.n_secret, args.n_none, args.n_context, args.n_unseen
    )
    base = ActivationOracle.load(target=args.target, dtype="float32", device="cpu")
    inputs = [
        TargetInput(prompt=it.text)
        if it.conversation is None
        else TargetInput(messages=it.conversation, add_generation_prompt=it.add_generation_prompt)
        for it in items
    ]
    acts: list = [None] * len(items)
    for span in sorted({it.read_span or "non_system" for it in items}):
        idx = [i for i, it in enumerate(items) if (it.read_span or "non_system") == span]
        caps = base.capture([inputs[i] for i in idx], [args.layer], span, batch_size=16)
        for i, cap in zip(idx, caps, strict=True):
            acts[i] = cap.activations[0, -MAX_READ:]
    # the control: activations of another item of the same family
    rng = random.Random(1)
    shuffled = list(range(len(items)))
    for family in {it.family for it in items}:
        idx = [i for i, it in enumerate(items) if it.family == family]
        perm = idx[:]
        rng.shuffle(perm)
        for a, b in zip(idx, perm, strict=True):
            shuffled[a] = b
    questions = [it.question for it in items]
    config = OracleConfig(base_model=args.target, read_layers=[args.layer], d_model=576)
    done = set()
    if args.out.is_file():
        done = {json.loads(x)["step"] for x in args.out.read_text().splitlines() if x.strip()}
    log.info("%d items captured at layer %d", len(items), args.layer)
    while True:
        todo = [(s, p) for s, p in checkpoints(args.run, args.every) if s not in done]
        for step, path in todo:
            start = time.perf_counter()
            weights = path / "oracle" if (path / "oracle").is_dir() else path  # peft's layout
            peft = PeftModel.from_pretrained(base.target, str(weights), adapter_name="oracle")
            peft.eval()
            ao = ActivationOracle(peft, base.tokenizer, config)
            answers = ao.answer(acts, questions, max_new_tokens=10, batch_size=16)
            sub = [i for i, it in enumerate(items) if not it.family.startswith("context")][::3]
            control = ao.answer(
                [acts[shuffled[i]] for i in sub],
                [questions[i] for i in sub],
                max_new_tokens=10,
                batch_size=16,
            )
            base.target = peft.unload()  # the bare target again, for the next checkpoint
            state = json.loads((path / "trainer_state.json").read_text())
            evals = [h["eval_loss"] for h in state["log_history"] if "eval_loss" in h]
            record = {
                "step": step,
                "layer": args.layer,
                "n_items": len(items),
                "eval_loss": evals[-1] if evals else None,
                "oracle": score(items, answers, world),
                "shuffled": score([items[i] for i in sub], control, world),
                "top_answers": {
                    fam: Counter(
                        a for a, it in zip(answers, items, strict=True) if it.family == fam
                    ).most_common(3)
                    for fam in ("persona", "secret")
                },
                "seconds": round(time.perf_counter() - start, 1),
            }
            with args.out.open("a") as f:
                f.write(json.dumps(record) + "\n")
            done.add(step)
            log.info("step %d: %s", step, json.dumps(record["oracle"]))
        if not args.watch or (args.until is not None and args.until in done):
            break
        time.sleep(60)


if __name__ == "__main__":
    main()
