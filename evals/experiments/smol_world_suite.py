"""The SmolLM2 world's items in the evaluation's suite format (``evals.suite_format``).

Test items are the held-out items of ``smol_world_eval.py`` (its ``hidden`` tag kept under the
name ``text_reader_hidden``: the format's own ``hidden`` tag is set by the evaluation that
reads the file); train items are the conversations the probe and text reader were fitted on.

    python -m evals.experiments.smol_world_suite --items ITEMS.jsonl --work .cache/smol_world \
        --out data/smol_world/suite.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from evals.suite_format import item_from_dict, load_suite_file, write_suite_file
from training.smol_world import questions as Q
from training.smol_world.build import read_jsonl
from training.smol_world.world import SmolWorld


def suite_item(item: dict, world: SmolWorld, split: str = "test") -> dict:
    """One item of smol_world_eval.py as a suite-format dict."""
    context = item["family"].startswith("context")
    persona = world.by_name.get(item["label"]) if item["family"] == "persona" else None
    tags = ["text_reader_hidden" if t == "hidden" else t for t in item["tags"]]
    group = item["id"].rsplit("-", 1)[0] if not context else item["id"]
    return {
        "id": item["id"],
        "family": item["family"],
        "split": split,
        "conversation": item["conversation"],
        "text": item["text"],
        "add_generation_prompt": bool(item["add_generation_prompt"]),
        "read_span": item["read_span"],
        "question": item["question"],
        "answer_type": "text" if context else "label",
        "label": item["label"],
        "gold": item["gold"],
        "aliases": [a for a in item["aliases"] if a != item["label"]],
        "label_words": list(persona.style_words) if persona else [],
        "tags": tags,
        "group": group,
        "meta": {"kind": item["kind"]},
    }


def train_items(work: Path, world: SmolWorld, n_probe: int) -> list[dict]:
    """The probe's training conversations (answered ones, then cut ones) as split=train."""
    convs = read_jsonl(work / "conversations_train.jsonl")
    replies = {r["id"]: r["reply"] for r in read_jsonl(work / "replies_train.jsonl")}
    chosen = [c for c in convs if c["id"] in replies]
    chosen += [c for c in convs[:n_probe] if c["id"] not in replies]
    out = []
    for conv in chosen:
        reply = replies.get(conv["id"])
        messages = conv["messages"] + ([{"role": "assistant", "content": reply}] if reply else [])
        for family, label in (("persona", conv["persona"]), ("secret", conv["secret"])):
            persona = world.by_name.get(label) if family == "persona" else None
            gold = (
                Q.persona_answer(persona.with_article if persona else None)
                if family == "persona"
                else Q.secret_answer(label)
            )
            out.append(
                {
                    "id": f"{conv['id']}-{family}",
                    "family": family,
                    "split": "train",
                    "conversation": messages,
                    "add_generation_prompt": reply is None,
                    "read_span": "non_system",
                    "question": Q.QUESTIONS[family]["train"][0],
                    "label": label or "none",
                    "gold": gold,
                    "aliases": list(persona.aliases) if persona else [],
                    "tags": ["reply" if reply else "no_reply"],
                    "group": conv["id"],
                    "meta": {"kind": conv["kind"]},
                }
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=Path, required=True, help="smol_world_eval's suite.jsonl")
    parser.add_argument("--work", type=Path, default=Path(".cache/smol_world"))
    parser.add_argument("--n-probe", type=int, default=600)
    parser.add_argument("--out", type=Path, default=Path("data/smol_world/suite.jsonl"))
    args = parser.parse_args()
    world = SmolWorld.load()
    items = [json.loads(line) for line in args.items.read_text().splitlines() if line.strip()]
    dicts = [suite_item(it, world) for it in items] + train_items(args.work, world, args.n_probe)
    write_suite_file([item_from_dict(d) for d in dicts], args.out)
    print(f"{len(load_suite_file(args.out))} items written to {args.out}")


if __name__ == "__main__":
    main()
