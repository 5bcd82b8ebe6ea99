"""The SmolLM2 world on both engines: the same held-out items answered greedily by ``hf`` and
``vllm``, compared text for text (vLLM on CPU serves head_dim 64, which SmolLM2 has).

    python -m scripts.experiments.smol_world_engines --oracle data/smol_world/oracle --n 24
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from evals.suite_format import load_suite_file
from oracle.engines import AnswerRequest, CaptureRequest, create_engine
from oracle.inputs import TargetInput

log = logging.getLogger("smol_world_engines")


def requests_of(engine, items) -> list[AnswerRequest]:
    captures = engine.capture(
        [
            CaptureRequest(
                TargetInput(
                    messages=it.conversation, add_generation_prompt=it.add_generation_prompt
                )
                if it.conversation
                else TargetInput(prompt=it.text),
                None,
                it.read_span,
            )
            for it in items
        ]
    )
    return [
        AnswerRequest(cap.activations[0][-32:], it.question, cap.layers[0], max_new_tokens=10)
        for cap, it in zip(captures, items, strict=True)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--oracle", type=Path, default=Path("data/smol_world/oracle"))
    parser.add_argument("--suite", type=Path, default=Path("data/smol_world/suite.jsonl"))
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    items = [it for it in load_suite_file(args.suite) if it.split == "test"][: args.n]
    start = time.perf_counter()
    hf = create_engine("hf", oracle=str(args.oracle), dtype="float32", device="cpu")
    requests = requests_of(hf, items)
    hf_answers = [a.text for a in hf.answer(requests)]
    hf_seconds = time.perf_counter() - start
    start = time.perf_counter()
    vllm = create_engine(
        "vllm", oracle=str(args.oracle), dtype="float32", device="cpu", max_model_len=1024
    )
    try:
        vllm_answers = [a.text for a in vllm.answer(requests)]
    finally:
        vllm.close()
    equal = sum(a == b for a, b in zip(hf_answers, vllm_answers, strict=True))
    result = {
        "n": len(items),
        "equal": equal,
        "hf_seconds": round(hf_seconds, 1),
        "vllm_seconds_with_startup": round(time.perf_counter() - start, 1),
        "pairs": [[a, b] for a, b in zip(hf_answers, vllm_answers, strict=True)],
    }
    log.info("%d of %d greedy answers equal between hf and vllm", equal, len(items))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "pairs"}))


if __name__ == "__main__":
    main()
