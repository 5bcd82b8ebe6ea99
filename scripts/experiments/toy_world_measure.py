"""Measure a toy-world oracle on held-out items, beside the baselines it must beat.

Until the evaluation suite (``oracle eval``) scores the toy world by its own rules, this runs
the toy world's own oracle evaluation (``training.toy_world.eval_oracle``, the build's eval
stage without the target's measures) on any oracle directory, at chosen sizes:

    python scripts/experiments/toy_world_measure.py --oracle data/toy_world/oracle \\
        --out results/experiments/measure_shipped.json

The committed ``results/toy_world_measure_shipped_small.json`` (the shipped oracle at a small
size, about 10 minutes on one busy core) came from:

    python scripts/experiments/toy_world_measure.py --oracle data/toy_world/oracle \\
        --out results/experiments/toy_world_measure_shipped_small.json --n 60 \\
        --n-identity 40 --n-context 40 --n-context-fit 300 --n-probe 600

Secret (overall, replies with no hint), persona (overall, replies without style words),
context prediction (exact match, token-F1), each in training and held-out wordings, beside the
best constant answer, the oracle's answer distribution, a linear probe fitted on ``--n-probe``
training conversations (the oracle's corpus: 40,000 in the build) and the text-free prior.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from oracle.oracle import ActivationOracle
from training.toy_world.eval_oracle import evaluate_oracle
from training.toy_world.generator import generate
from training.toy_world.world import World


def summary(m: dict) -> dict:
    """The headline figures (oracle / best constant / probe)."""
    ctx = m.get("context", {})

    def c(split: str, key: str):
        return ctx.get(split, {}).get("all", {}).get(key)

    keys = (
        "persona",
        "persona_heldout_q",
        "persona_unstyled",
        "persona_unstyled_heldout_q",
        "best_constant_persona",
        "probe_persona",
        "probe_persona_unstyled",
        "secret",
        "secret_heldout_q",
        "secret_no_hint",
        "secret_no_hint_heldout_q",
        "secret_helpful",
        "best_constant_secret",
        "probe_secret",
        "probe_secret_no_hint",
        "system_prompt_detected",
        "system_prompt_detected_heldout_q",
        "no_system_says_no_persona",
    )
    out = {k: None if m.get(k) is None else round(m[k], 4) for k in keys}
    out["secret_top_answer_share"] = m["secret_answers"]["heldout"]["top_share"]
    out["secret_top_answer"] = m["secret_answers"]["heldout"]["top"]
    out["n"] = m["n"]
    if ctx:
        out["context"] = {
            s: {"exact": c(s, "exact"), "f1": c(s, "f1")}
            for s in ("train", "heldout", "probe", "prior")
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--oracle", type=Path, default=Path("data/toy_world/oracle"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=600, help="held-out conversations (+1/5 combos)")
    ap.add_argument("--n-identity", type=int, default=400, help="extra held-out identity turns")
    ap.add_argument("--n-context", type=int, default=400)
    ap.add_argument("--n-context-fit", type=int, default=8000)
    ap.add_argument("--n-probe", type=int, default=40000, help="probe fit conversations")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    world = World.load()
    ao = ActivationOracle.load(oracle=args.oracle, dtype="float32", device="cpu")
    probe_convs = generate(world, "train", args.n_probe, seed=1) if args.n_probe else None
    metrics = evaluate_oracle(
        ao,
        world,
        n=args.n,
        n_combo=args.n // 5,
        n_identity=args.n_identity,
        probe_conversations=probe_convs,
        n_context=args.n_context,
        n_context_fit=args.n_context_fit,
    )
    metrics.pop("examples", None)
    result = {
        "oracle": str(args.oracle),
        "args": {k: str(v) for k, v in vars(args).items() if k != "out"},
        "summary": summary(metrics),
        "metrics": metrics,
        "seconds": round(time.perf_counter() - start, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
