"""How much a linear probe reads from SmolLM2's activations as its training set grows: the
persona (40 training personas + "none") and the secret word (24 + "none"), on the held-out
items of the SmolLM2 world's suite, per read layer. It answers whether the information the
oracle is asked for is in the activations it reads, and how much data reading it takes. The
probe is the evaluation's (:mod:`evals.probe`); the committed ``probe_curve.json`` was made
(commit 3c312c5 and before) with a grid search of its own over C in (0.01, 0.1, 1).

    python -m scripts.experiments.smol_world_probe_curve --suite data/smol_world/suite.jsonl \
        --layers 15,28 --sizes 300,600,1200,2400 --out data/smol_world/probe_curve.json
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from evals.probe import fit_probe
from evals.suite_format import load_suite_file
from oracle.inputs import TargetInput
from oracle.oracle import ActivationOracle
from worlds.smol.build import read_jsonl

log = logging.getLogger("smol_world_probe_curve")
MAX_READ = 32  # the oracle was trained on at most the span's last 32 positions


def features(vectors: list[dict[int, torch.Tensor]], layer: int) -> np.ndarray:
    """Mean-pooled and last-position vectors side by side: (N, 2D)."""
    return np.stack([torch.cat([v[layer].mean(0), v[layer][-1]]).numpy() for v in vectors]).astype(
        np.float32
    )


def read_all(ao, inputs: list[TargetInput], layers: list[int]) -> list[dict[int, torch.Tensor]]:
    caps = ao.capture(inputs, layers=layers, positions="non_system", batch_size=32)
    return [{layer: c.activations[k, -MAX_READ:] for k, layer in enumerate(layers)} for c in caps]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, default=Path("data/smol_world/suite.jsonl"))
    parser.add_argument("--work", type=Path, default=Path(".cache/smol_world"))
    parser.add_argument("--layers", default="15,28")
    parser.add_argument("--sizes", default="300,600,1200,2400")
    parser.add_argument("--out", type=Path, default=Path("data/smol_world/probe_curve.json"))
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on a CPU with it), fp32")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    layers = [int(x) for x in args.layers.split(",")]
    sizes = [int(x) for x in args.sizes.split(",")]
    ao = ActivationOracle.load(target="smollm2-135m", dtype=args.dtype, device="cpu")
    test = [
        it
        for it in load_suite_file(args.suite)
        if it.split == "test"
        and it.family in ("persona", "secret")
        and "unseen_persona" not in it.tags
    ]
    # the training conversations, cut after the user turn (header added): no reply needed
    convs = read_jsonl(args.work / "conversations_train.jsonl")[: max(sizes)]
    train_vecs = read_all(
        ao, [TargetInput(messages=c["messages"], add_generation_prompt=True) for c in convs], layers
    )
    test_vecs = read_all(
        ao,
        [
            TargetInput(messages=it.conversation, add_generation_prompt=it.add_generation_prompt)
            for it in test
        ],
        layers,
    )
    log.info("captured %d + %d (%.0f s)", len(convs), len(test), time.perf_counter() - start)
    results: dict = {"layers": layers, "sizes": sizes, "n_test": {}, "curve": {}}
    for family, key in (("persona", "persona"), ("secret", "secret")):
        idx = [i for i, it in enumerate(test) if it.family == family]
        subsets = {
            "overall": idx,
            "with_label": [i for i in idx if test[i].label != "none"],
            # hidden by construction: no reply, the user turn drawn apart from the system prompt
            "hidden_with_label": [
                i for i in idx if test[i].label != "none" and test[i].constructed_hidden
            ],
            "hidden": [i for i in idx if test[i].constructed_hidden],
        }
        results["n_test"][family] = {k: len(v) for k, v in subsets.items()}
        for layer in layers:
            x_test = features([test_vecs[i] for i in idx], layer)
            for size in sizes:
                y = [c[key] or "none" for c in convs[:size]]
                fit = fit_probe("label", features(train_vecs[:size], layer), y, x_test)
                pred = dict(zip(idx, fit.predictions, strict=True))
                row = {
                    name: round(float(np.mean([pred[i] == test[i].label for i in chosen])), 4)
                    for name, chosen in subsets.items()
                    if chosen
                }
                row["C"] = fit.C
                results["curve"][f"{family}/layer{layer}/n{size}"] = row
                log.info("%s layer %d n=%d: %s", family, layer, size, row)
    results["seconds"] = round(time.perf_counter() - start, 1)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
