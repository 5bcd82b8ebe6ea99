"""Measure the SmolLM2 world's oracle on held-out items, beside a linear probe on the same
layer, a text-only reader of the visible transcript and the best constant answer.

    python -m evals.experiments.smol_world_eval --oracle data/smol_world/oracle \
        --work .cache/smol_world --out data/smol_world

Writes ``suite.jsonl`` (the held-out items, ``hidden`` tags set) and ``metrics.json`` to
``--out``. Items: held-out users, every question in a held-out wording; system prompts in
train and held-out phrasings (tagged), personas never trained (tagged), held-out persona +
secret combinations (tagged). An item is ``hidden`` when its visible text (user turn and
reply, no system prompt) names no persona alias or style word (no secret word, for secrets)
and the text-only reader (TF-IDF + logistic regression, fitted out of fold) misses it.
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

from evals.experiments.smol_world_context import context_probe, features, target_reads_text
from oracle.inputs import TargetInput
from oracle.oracle import ActivationOracle
from training.smol_world import questions as Q
from training.smol_world.build import EVAL_HEAD, read_jsonl
from training.smol_world.suite import context_items, conversation_items
from training.smol_world.world import SmolWorld

log = logging.getLogger("smol_world_eval")
MAX_READ = 32  # the oracle was trained on at most the span's last 32 positions


# ------------------------------------------------------------------ items and text
def build_items(work: Path, world: SmolWorld, tokenizer, n_noreply: int, n_context: int):
    heldout = read_jsonl(work / "conversations_heldout.jsonl")
    replies = {r["id"]: r["reply"] for r in read_jsonl(work / "replies_heldout.jsonl")}
    answered = [c for c in heldout[EVAL_HEAD:] if c["id"] in replies]
    cut = [c for c in heldout[EVAL_HEAD:] if c["id"] not in replies][:n_noreply]
    items = conversation_items(answered + cut, replies, world, seed=5)
    texts = [replies[c["id"]] for c in answered if replies[c["id"]].strip()]
    items += context_items(texts, tokenizer, n_context, seed=6)
    return items


def visible(item: dict) -> str:
    if item["conversation"] is None:
        return item["text"]
    return " ".join(m["content"] for m in item["conversation"] if m["role"] != "system")


def training_text(work: Path, n: int) -> tuple[list[dict], dict[str, str]]:
    convs = read_jsonl(work / "conversations_train.jsonl")[:n]
    replies = {r["id"]: r["reply"] for r in read_jsonl(work / "replies_train.jsonl")}
    return convs, replies


def text_reader(items: list[dict], train_texts: list[str], train_labels: list[str], family: str):
    """Out-of-fold predictions of a TF-IDF + logistic regression on the visible text."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    chosen = [i for i, it in enumerate(items) if it["family"] == family]
    preds: dict[int, str] = {}
    folds = [chosen[k::5] for k in range(5)]
    for fold in folds:
        rest = [i for i in chosen if i not in set(fold)]
        x = train_texts + [visible(items[i]) for i in rest]
        y = train_labels + [items[i]["label"] for i in rest]
        model = make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True),
            LogisticRegression(C=10.0, max_iter=2000),
        )
        model.fit(x, y)
        for i, p in zip(fold, model.predict([visible(items[i]) for i in fold]), strict=True):
            preds[i] = p
    return preds


def tag_hidden(items: list[dict], world: SmolWorld, text_preds: dict[str, dict[int, str]]):
    for i, item in enumerate(items):
        if item["family"] not in ("persona", "secret"):
            continue
        text = visible(item)
        if item["family"] == "persona":
            shows = bool(world.style_pattern.search(text))
        else:
            shows = item["label"] != "none" and bool(
                world.secret_pattern(item["label"]).search(text)
            )
        right = text_preds[item["family"]].get(i) == item["label"]
        item["text_reader"] = text_preds[item["family"]].get(i)
        if not shows and not right:
            item["tags"].append("hidden")


# ------------------------------------------------------------------ activations
def target_input(item: dict) -> TargetInput:
    if item["conversation"] is None:
        return TargetInput(prompt=item["text"])
    return TargetInput(
        messages=item["conversation"], add_generation_prompt=item["add_generation_prompt"]
    )


def read(ao: ActivationOracle, inputs: list[TargetInput], spans: list[str], layers: list[int]):
    """Per input: {layer: (n, D)} over its span's last MAX_READ positions (adapter off)."""
    out: list[dict[int, torch.Tensor]] = [{} for _ in inputs]
    for span in sorted(set(spans)):
        idx = [i for i, s in enumerate(spans) if s == span]
        caps = ao.capture([inputs[i] for i in idx], layers=layers, positions=span, batch_size=16)
        for i, cap in zip(idx, caps, strict=True):
            for k, layer in enumerate(layers):
                out[i][layer] = cap.activations[k, -MAX_READ:]
    return out


def fit_probe(x: np.ndarray, y: list[str]):
    """Logistic regression on standardised features, C chosen by 3-fold cross-validation."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    grid = GridSearchCV(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        {"logisticregression__C": [0.01, 0.1, 1.0]},
        cv=3,
    )
    return grid.fit(x, y)


# ------------------------------------------------------------------ scoring
def persona_label(answer: str, world: SmolWorld) -> str | None:
    from evals.scoring import label_of

    if Q.says_no_persona(answer):
        return "none"
    names = [p.name for p in world.personas]
    return label_of(answer, names, {p.name: list(p.aliases) for p in world.personas})


def secret_label(answer: str, world: SmolWorld) -> str | None:
    if "no secret" in answer.lower():
        return "none"
    words = re.findall(r"[a-z]+", answer.lower())
    return next((w for w in words if w in world.secrets), None)


def normalise(text: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]", text.lower())


def token_f1(pred: str, gold: str) -> float:
    p, g = normalise(pred), normalise(gold)
    common = sum((Counter(p) & Counter(g)).values())
    if not p or not g or not common:
        return float(p == g)
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def correct(item: dict, answer: str, world: SmolWorld) -> bool:
    if item["family"] == "persona":
        if item["label"] == "none":
            return persona_label(answer, world) == "none"
        return Q.names_role(answer, item["aliases"])
    if item["family"] == "secret":
        return secret_label(answer, world) == item["label"]
    return normalise(answer) == normalise(item["gold"])


def rate(flags: list[bool]) -> dict:
    return {"acc": round(float(np.mean(flags)), 4) if flags else None, "n": len(flags)}


def constant_best(golds: list[str]) -> dict:
    if not golds:
        return {"answer": None, "acc": None}
    answer, count = Counter(golds).most_common(1)[0]
    return {"answer": answer, "acc": round(count / len(golds), 4)}


def summary(items: list[dict], answers: dict[str, list[str]], world: SmolWorld) -> dict:
    """Accuracy of each method (answers[method][i]) on each family and subset."""
    out: dict = {}
    subsets = {
        "overall": lambda it: "unseen_persona" not in it["tags"],
        "hidden": lambda it: "hidden" in it["tags"] and "unseen_persona" not in it["tags"],
        "heldout_system": lambda it: "heldout_system" in it["tags"],
        "no_reply": lambda it: "no_reply" in it["tags"] and "unseen_persona" not in it["tags"],
        "reply": lambda it: "reply" in it["tags"] and "unseen_persona" not in it["tags"],
        "with_label": lambda it: it["label"] != "none" and "unseen_persona" not in it["tags"],
        "hidden_with_label": lambda it: (
            "hidden" in it["tags"] and it["label"] != "none" and "unseen_persona" not in it["tags"]
        ),
        "unseen_persona": lambda it: "unseen_persona" in it["tags"],
        "default_system": lambda it: "default_system" in it["tags"],
    }
    for family in ("persona", "secret", "context_next", "context_previous"):
        idx = [i for i, it in enumerate(items) if it["family"] == family]
        fam: dict = {}
        for name, keep in subsets.items():
            chosen = [i for i in idx if keep(items[i])]
            if not chosen:
                continue
            row = {
                "n": len(chosen),
                "best_constant": constant_best([items[i]["gold"] for i in chosen]),
            }
            for method, preds in answers.items():
                if any(preds[i] is None for i in chosen):
                    continue
                row[method] = rate([correct(items[i], preds[i], world) for i in chosen])["acc"]
                if family.startswith("context"):
                    row[method + "_f1"] = round(
                        float(np.mean([token_f1(preds[i], items[i]["gold"]) for i in chosen])), 4
                    )
            fam[name] = row
        if "oracle" not in answers:
            out[family] = fam
            continue
        oracle_answers = [answers["oracle"][i] for i in idx]
        top = Counter(oracle_answers).most_common(5)
        fam["oracle_top_answers"] = [[a, n] for a, n in top]
        fam["oracle_top_share"] = round(top[0][1] / len(idx), 4) if top else None
        if family in ("persona", "secret"):
            per_q = {}
            for q in sorted({items[i]["question"] for i in idx}):
                flags = [
                    correct(items[i], answers["oracle"][i], world)
                    for i in idx
                    if items[i]["question"] == q
                ]
                per_q[q] = rate(flags)
            fam["oracle_per_wording"] = per_q
        out[family] = fam
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--oracle", type=Path, default=Path("data/smol_world/oracle"))
    parser.add_argument(
        "--no-oracle", action="store_true", help="baselines only: probes, text reader, constants"
    )
    parser.add_argument("--target", default="smollm2-135m", help="with --no-oracle")
    parser.add_argument("--layer", type=int, default=15, help="with --no-oracle: the read layer")
    parser.add_argument("--work", type=Path, default=Path(".cache/smol_world"))
    parser.add_argument("--out", type=Path, default=Path("data/smol_world"))
    parser.add_argument("--probe-layers", default="8,15,22")
    parser.add_argument("--n-noreply", type=int, default=240)
    parser.add_argument("--n-context", type=int, default=120)
    parser.add_argument("--n-probe", type=int, default=1000, help="no-reply training convs")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    world = SmolWorld.load()
    if args.no_oracle:
        ao = ActivationOracle.load(target=args.target, dtype="float32", device="cpu")
        layer = args.layer
    else:
        ao = ActivationOracle.load(oracle=args.oracle, dtype="float32", device="cpu")
        layer = ao.config.default_layer
    layers = sorted({int(x) for x in args.probe_layers.split(",")} | {layer})
    items = build_items(args.work, world, ao.tokenizer, args.n_noreply, args.n_context)
    log.info("%d items", len(items))

    # text-only reader and the hidden tags
    convs, train_replies = training_text(args.work, args.n_probe)
    answered = [
        c for c in read_jsonl(args.work / "conversations_train.jsonl") if c["id"] in train_replies
    ]
    probe_convs = answered + [c for c in convs if c["id"] not in train_replies]

    def conv_text(c: dict) -> str:
        return " ".join([c["messages"][1]["content"], train_replies.get(c["id"], "")])

    text_preds = {
        "persona": text_reader(
            items,
            [conv_text(c) for c in probe_convs],
            [c["persona"] or "none" for c in probe_convs],
            "persona",
        ),
        "secret": text_reader(
            items,
            [conv_text(c) for c in probe_convs],
            [c["secret"] or "none" for c in probe_convs],
            "secret",
        ),
    }
    tag_hidden(items, world, text_preds)

    # activations of items and probe-training conversations
    vecs = read(ao, [target_input(it) for it in items], [it["read_span"] for it in items], layers)
    train_inputs = [
        TargetInput(
            messages=c["messages"]
            + (
                [{"role": "assistant", "content": train_replies[c["id"]]}]
                if c["id"] in train_replies
                else []
            ),
            add_generation_prompt=c["id"] not in train_replies,
        )
        for c in probe_convs
    ]
    train_vecs = read(ao, train_inputs, ["non_system"] * len(train_inputs), layers)
    log.info("captured (%.0f s)", time.perf_counter() - start)

    answers: dict[str, list] = {}
    answers["text_reader"] = [text_preds.get(it["family"], {}).get(i) for i, it in enumerate(items)]
    # the text reader answers a label: turn it into an answer string for `correct`
    for i, it in enumerate(items):
        p = answers["text_reader"][i]
        if it["family"] == "persona" and p is not None:
            answers["text_reader"][i] = Q.NO_PERSONA if p == "none" else p
        elif it["family"] == "secret" and p is not None:
            answers["text_reader"][i] = Q.NO_SECRET if p == "none" else p
        elif p is None:
            answers["text_reader"][i] = None
    probe_scores = {}
    for probe_layer in layers:
        preds: list = [None] * len(items)
        for family, key in (("persona", "persona"), ("secret", "secret")):
            y = [c[key] or "none" for c in probe_convs]
            model = fit_probe(features(train_vecs, probe_layer), y)
            idx = [i for i, it in enumerate(items) if it["family"] == family]
            got = model.predict(features([vecs[i] for i in idx], probe_layer))
            for i, g in zip(idx, got, strict=True):
                none = Q.NO_PERSONA if family == "persona" else Q.NO_SECRET
                preds[i] = none if g == "none" else g
            probe_scores[f"{family}_C_layer{probe_layer}"] = model.best_params_
        answers[f"probe_layer{probe_layer}"] = preds
    # context items: a token probe on the oracle's layer, and the target reading the window
    ctx_train = context_items(list(train_replies.values()), ao.tokenizer, 300, seed=8)
    ctx_vecs = read(
        ao, [target_input(it) for it in ctx_train], [it["read_span"] for it in ctx_train], [layer]
    )
    answers["context_probe"] = context_probe(ao, items, vecs, ctx_train, ctx_vecs, layer)
    answers["target_reads_text"] = target_reads_text(ao, items)
    if args.no_oracle:
        extra = {"probe_regularisation": probe_scores}
        finish(args, items, answers, world, extra, layer, start, len(probe_convs))
        return
    # the oracle, and the oracle on activations shuffled across items of the same family
    acts = [v[layer] for v in vecs]
    questions = [it["question"] for it in items]
    answers["oracle"] = ao.answer(acts, questions, max_new_tokens=10, batch_size=16)
    log.info("oracle answered (%.0f s)", time.perf_counter() - start)
    rng = random.Random(0)
    shuffled = list(range(len(items)))
    for family in ("persona", "secret"):
        idx = [i for i, it in enumerate(items) if it["family"] == family]
        perm = idx[:]
        rng.shuffle(perm)
        for a, b in zip(idx, perm, strict=True):
            shuffled[a] = b
    sub = [i for i, it in enumerate(items) if it["family"] in ("persona", "secret")][::3]
    got = ao.answer(
        [acts[shuffled[i]] for i in sub],
        [questions[i] for i in sub],
        max_new_tokens=10,
        batch_size=16,
    )
    answers["oracle_shuffled"] = [None] * len(items)
    for i, g in zip(sub, got, strict=True):
        answers["oracle_shuffled"][i] = g
    extra: dict = {"probe_regularisation": probe_scores}
    for family in ("persona", "secret"):
        idx = [
            i
            for i in sub
            if items[i]["family"] == family and "unseen_persona" not in items[i]["tags"]
        ]
        extra[f"{family}_oracle_shuffled_overall"] = rate(
            [correct(items[i], answers["oracle_shuffled"][i], world) for i in idx]
        )
    finish(args, items, answers, world, extra, layer, start, len(probe_convs))


def finish(args, items, answers, world, extra, layer, start, n_probe_train=None) -> None:
    """Write suite.jsonl, answers.jsonl and metrics.json to ``args.out``."""
    rng = random.Random(1)
    metrics = summary(items, {k: v for k, v in answers.items() if k != "oracle_shuffled"}, world)
    metrics.update(extra)
    metrics["read_layer"] = layer
    metrics["n_items"] = len(items)
    metrics["n_probe_train"] = n_probe_train
    metrics["seconds"] = round(time.perf_counter() - start, 1)
    examples = rng.sample(range(len(items)), min(50, len(items)))
    metrics["examples"] = [
        {
            "id": items[i]["id"],
            "question": items[i]["question"],
            "gold": items[i]["gold"],
            "oracle": answers["oracle"][i] if "oracle" in answers else None,
            "tags": items[i]["tags"],
            "visible": visible(items[i])[:160],
        }
        for i in sorted(examples)
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "suite.jsonl").open("w") as f:
        for it in items:
            f.write(json.dumps({k: v for k, v in it.items() if k != "text_reader"}) + "\n")
    with (args.out / "answers.jsonl").open("w") as f:
        for i, it in enumerate(items):
            f.write(json.dumps({"id": it["id"], **{k: v[i] for k, v in answers.items()}}) + "\n")
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log.info("done in %.0f s: %s", time.perf_counter() - start, args.out / "metrics.json")


if __name__ == "__main__":
    main()
