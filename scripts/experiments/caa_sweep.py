"""CAA on SmolLM2: which contrast and block steer, scored on validation prompts only.

For each persona, the CAA vector (``oracle.steering.caa``) with ``--read prompt`` (the prompt's
tokens with and without the persona prompt) or ``--read reply`` (the replies written with and
without it), at each block of ``--layers``, added in each apply mode at scales 1, 2 and 4 to
greedy replies to the 4 validation prompts of ``steering_compare`` (its split: the same seed,
never its test prompts). Prints each setting's style-word rate and perplexity ratio (the
replies' perplexity under the unsteered target over the unsteered replies'), and the rate of
the target told the persona in its system prompt. What ``steering_compare --layer`` was chosen
from.

    python -m scripts.experiments.caa_sweep --read reply --layers 6,10,15 --personas pirate,chef
"""

from __future__ import annotations

import argparse
import math
import random
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--read", choices=("reply", "prompt"), default="reply")
    parser.add_argument("--layers", default="6,10,15")
    parser.add_argument("--personas", default="pirate,chef,robot")
    parser.add_argument("--scales", default="1,2,4")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from oracle.oracle import ActivationOracle
    from oracle.steering.caa import caa_vector
    from oracle.steering.generate import generate
    from oracle.steering.measure import reply_nll
    from oracle.worlds import get_world
    from worlds.smol.world import SmolWorld, word_pattern

    world = SmolWorld.load()
    rng = random.Random(0)  # steering_compare's split (seed 0): 6 train, 4 validation prompts
    train = [m.text for m in world.user_messages["train"] if m.task != "standalone"]
    held = [m.text for m in world.user_messages["heldout"]]
    rng.shuffle(train)
    rng.shuffle(held)
    train, val = train[:6], held[:4]
    ao = ActivationOracle.load(oracle=str(get_world("smol").oracle_dir()), device="cpu")
    base_nll = float(np.nanmean(reply_nll(ao, val, generate(ao, val, max_new_tokens=32))))
    for name in args.personas.split(","):
        p = world.by_name[name]
        pattern = word_pattern([p.name, *p.aliases, *p.style_words])
        prompt = f"You are {p.with_article}. {p.instruction}"
        told = generate(ao, val, max_new_tokens=32, system=prompt)
        rate = np.mean([bool(pattern.search(x)) for x in told])
        print(f"{name}: the system prompt itself, style {rate:.2f}", flush=True)
        for layer in [int(x) for x in args.layers.split(",")]:
            t0 = time.time()
            vector = caa_vector(ao, train, prompt, layer, read=args.read)
            for apply in ("all", "reply"):
                for scale in [float(x) for x in args.scales.split(",")]:
                    replies = generate(
                        ao, val, vector, layer, scale, max_new_tokens=32, apply=apply
                    )
                    nll = [x for x in reply_nll(ao, val, replies) if math.isfinite(x)]
                    ppl = math.exp(sum(nll) / len(nll) - base_nll) if nll else float("inf")
                    style = np.mean([bool(pattern.search(x)) for x in replies])
                    print(
                        f"{name} block {layer} {apply} x{scale:g}: style {style:.2f} "
                        f"ppl x{ppl:.2f} | {replies[0][:60]!r}",
                        flush=True,
                    )
            print(f"  ({time.time() - t0:.0f} s, norm {vector.norm():.1f})", flush=True)


if __name__ == "__main__":
    main()
