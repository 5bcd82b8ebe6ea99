"""Does bf16 change anything that matters? The same oracle loaded in fp32 and in bf16 (what
``dtype: auto`` picks on a CPU with native bf16): the capture's cosine per position, and the
greedy answers to a world's held-out items, compared text for text.

    python -m scripts.experiments.bf16_check --world toy --n 200
    python -m scripts.experiments.bf16_check --world smol --n 200

Prints and writes JSON (``--out``): the cosine's mean, 1st percentile and minimum over every
read position, and how many answers are equal, with the differing ones listed.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch

from evals.suite_format import load_suite_file
from evals.suites import load_suites
from oracle.engines import AnswerRequest, CaptureRequest, create_engine
from oracle.inputs import TargetInput
from oracle.worlds import get_world


def test_items(world: str, n: int, seed: int):
    """``n`` random held-out test items with a conversation or text (the world's suite)."""
    if world == "toy":  # 40 conversations of each of three suites
        files = get_world(world).suite_files()
        suites, _ = load_suites(files, ["persona", "secret", "system"], False, seed, 40, 10)
        items = [i for s in suites.values() for i in s.test]
    else:
        items = [i for i in load_suite_file(get_world(world).suite()) if i.split == "test"]
    return random.Random(seed).sample(items, min(n, len(items)))


def run(engine, items) -> tuple[list[torch.Tensor], list[str]]:
    caps = engine.capture(
        [
            CaptureRequest(
                TargetInput(messages=i.conversation, add_generation_prompt=i.add_generation_prompt)
                if i.conversation
                else TargetInput(prompt=i.text),
                None,
                i.read_span,
            )
            for i in items
        ]
    )
    acts = [c.activations[0].float() for c in caps]
    requests = [
        AnswerRequest(c.activations[0][-32:], i.question, c.layers[0], max_new_tokens=12)
        for c, i in zip(caps, items, strict=True)
    ]
    answers = []
    for s in range(0, len(requests), 16):
        answers += [a.text for a in engine.answer(requests[s : s + 16])]
    return acts, answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default="toy", help="toy | smol")
    parser.add_argument("--n", type=int, default=200, help="held-out items compared")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    items = test_items(args.world, args.n, args.seed)
    spec = get_world(args.world)
    results, seconds = {}, {}
    for dtype in ("fp32", "bf16"):
        engine = create_engine("hf", None, str(spec.oracle_dir()), dtype=dtype, device="cpu")
        start = time.perf_counter()
        results[dtype] = run(engine, items)
        seconds[dtype] = time.perf_counter() - start
        engine.close()
    (a32, t32), (a16, t16) = results["fp32"], results["bf16"]
    cos = torch.cat(
        [torch.nn.functional.cosine_similarity(x, y, dim=-1) for x, y in zip(a32, a16, strict=True)]
    )
    same = [x.strip() == y.strip() for x, y in zip(t32, t16, strict=True)]
    out = {
        "world": args.world,
        "items": len(items),
        "positions": int(cos.numel()),
        "cosine_mean": float(cos.mean()),
        "cosine_p01": float(cos.quantile(0.01)),
        "cosine_min": float(cos.min()),
        "answers_equal": sum(same),
        "seconds": seconds,
        "differing": [
            {"question": i.question, "fp32": x, "bf16": y}
            for i, x, y, s in zip(items, t32, t16, same, strict=True)
            if not s
        ][:20],
    }
    print(
        f"{args.world}: {len(items)} held-out items, {out['positions']} read positions; capture "
        f"cosine bf16 vs fp32: mean {out['cosine_mean']:.5f}, 1st percentile "
        f"{out['cosine_p01']:.5f}, min {out['cosine_min']:.5f}; greedy answers equal: "
        f"{sum(same)} of {len(items)}; time fp32 {seconds['fp32']:.1f} s, bf16 "
        f"{seconds['bf16']:.1f} s"
    )
    for d in out["differing"][:5]:
        print(f"  {d['question']!r}: fp32 {d['fp32']!r} / bf16 {d['bf16']!r}")
    if args.out:
        args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
