"""Can the toy oracle learn to name the secret from the easiest read? A fast, isolated test.

Secret rows only, read at a window of 1-4 tokens ending just before a hint's first fact
("... rhymes with" | "chapel"), where a linear probe names the secret 96% of the time at
layer 0 (results/toy_world_secret_probe_full.log); or at the whole non-system span
(``--read span``). The target's vectors are captured once; a fresh LoRA oracle is trained on
them with a plain loop (no Trainer: short prompts, fast), and scored on held-out rows by
teacher-forced exact match of the whole answer (what greedy decoding gives), with each row's
own vectors and with another row's (shuffled). Variants: injection site and coefficient, read
layer, learning rate, LoRA rank, answer style; ``--label-vectors`` checks the loop itself.

    python scripts/experiments/toy_world_readout.py --name base --steps 300
    python scripts/experiments/toy_world_readout.py --name coef4 --coefficient 4

Appends one JSON line per run to ``--out`` (default ``results/toy_world_readout.jsonl``) when
the run ends. The committed lines came from (1 thread, each
about 10 minutes on a busy core, most of it capturing the vectors):

    for v in "base_small" "embedding_small --site embedding" "coef4_small --coefficient 4" \
        "label_vectors_small --label-vectors"; do
      python scripts/experiments/toy_world_readout.py --n-train 4000 --steps 150 \
          --eval-every 50 --name $v
    done
    # then the same way: "label_vectors_lr1e-2 --label-vectors --lr 1e-2 --steps 300" and
    # "label_vectors_600 --label-vectors --steps 600" (the later --steps wins)

and ``results/toy_world_readout_base_partial.log`` holds the printed lines of a first run
(``--name base --steps 300``, 12,000 conversations), stopped after 50 steps.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch
from datasets import Dataset

from oracle.adapter import add_oracle_lora
from oracle.inject import InjectionSpec, inject
from oracle.models import load_model
from training import TrainConfig
from training.collate import OracleCollator
from training.prepare import prepare_dataset
from training.trainer import capture_vectors
from worlds.toy.generator import generate
from worlds.toy.oracle_data import OracleDataConfig, oracle_rows
from worlds.toy.world import TOY_WORLD, World


def rows_for(world, tok, n_convs: int, seed: int, read: str, style: str, split: str) -> list:
    convs = generate(world, split, n_convs, seed=seed)
    cfg = OracleDataConfig(
        families={"secret": 1.0},
        rows_per_conversation=1,
        no_reply_share=0.0,
        secret_hint_window_share=1.0 if read == "window" else 0.0,
        secret_sampled_positions_share=0.0,
        secret_absent_share=0.0,
        secret_answer_style=style,
    )
    rows = oracle_rows(convs, world, seed, cfg, tokenizer=tok)
    if read == "window":
        return [r for r in rows if r["source"].endswith("hint_window")]
    return [r for r in rows if r["answer"] != "No secret word."]


@torch.no_grad()
def featurise(model, tok, rows, layer: int, batch_size: int = 64) -> list[dict]:
    config = TrainConfig(model="m", output_dir="o", read_layers=[layer], max_read_positions=160)
    data = prepare_dataset(Dataset.from_list(rows), tok, 4, [layer], config)
    feats = [dict(data[i]) for i in range(len(data))]
    collate = OracleCollator(tok.pad_token_id or 0)
    for start in range(0, len(feats), batch_size):
        chunk = feats[start : start + batch_size]
        batch = collate(chunk)
        vecs = capture_vectors(
            model,
            batch["target_ids"],
            batch["target_mask"],
            batch["layers"],
            batch["read_positions"],
        )
        for f, v in zip(chunk, vecs, strict=True):
            f["vectors"] = v
    return feats


def label_vectors(feats: list[dict], d: int, seed: int = 0) -> None:
    """Replace each row's vectors (P, D) by one random direction per answer, at each
    vector's own norm: the answer is then a function of the vectors, by construction."""
    g = torch.Generator().manual_seed(seed)
    protos: dict[tuple, torch.Tensor] = {}
    for f in feats:
        answer = tuple(f["input_ids"][f["answer_start"] :])
        if answer not in protos:
            protos[answer] = torch.nn.functional.normalize(torch.randn(d, generator=g), dim=0)
        norms_P1 = f["vectors"].norm(dim=-1, keepdim=True)
        f["vectors"] = norms_P1 * protos[answer].to(f["vectors"].dtype)


def loss_and_exact(model, spec, collate, feats, vectors):
    batch = collate(feats)
    with inject(model, spec, batch["placeholder_positions"], vectors, batch["input_ids"].shape[1]):
        logits_BTV = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).logits
    labels_BT = batch["labels"]
    next_BT = labels_BT[:, 1:]
    logits_BTV = logits_BTV[:, :-1]
    loss = torch.nn.functional.cross_entropy(
        logits_BTV.flatten(0, 1), next_BT.flatten(), ignore_index=-100
    )
    ok_BT = (logits_BTV.argmax(-1) == next_BT) | (next_BT == -100)
    return loss, ok_BT.all(-1).float()


@torch.no_grad()
def evaluate(model, spec, collate, feats, seed: int = 0) -> dict:
    model.eval()
    donors = list(range(len(feats)))
    random.Random(seed).shuffle(donors)
    out = {}
    for name, vecs in (
        ("true", [f["vectors"] for f in feats]),
        # another row's vectors, cut or tiled to this row's number of placeholders
        (
            "shuffled",
            [
                feats[j]["vectors"].repeat(len(f["vectors"]), 1)[: len(f["vectors"])]
                for f, j in zip(feats, donors, strict=True)
            ],
        ),
    ):
        losses, exact = [], []
        for start in range(0, len(feats), 64):
            loss, ok = loss_and_exact(
                model, spec, collate, feats[start : start + 64], vecs[start : start + 64]
            )
            losses.append(float(loss))
            exact += ok.tolist()
        out[name] = {
            "loss": round(sum(losses) / len(losses), 4),
            "exact": round(sum(exact) / len(exact), 4),
        }
    model.train()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--read", default="window", choices=["window", "span"])
    ap.add_argument("--read-layer", type=int, default=0)
    ap.add_argument("--site", default="layer:1")
    ap.add_argument("--coefficient", type=float, default=1.0)
    ap.add_argument("--mode", default="add")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--style", default="phrase")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--n-train", type=int, default=12000, help="training conversations")
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("results/experiments/toy_world_readout.jsonl"))
    ap.add_argument(
        "--label-vectors",
        action="store_true",
        help="sanity check: replace every row's vectors by a fixed random vector per answer "
        "(same norms); an oracle that cannot learn these cannot learn from any vectors",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start_time = time.perf_counter()
    world = World.load()
    model, tok = load_model(str(TOY_WORLD / "target"), dtype="float32", device="cpu")
    train = featurise(
        model,
        tok,
        rows_for(world, tok, args.n_train, 1, args.read, args.style, "train"),
        args.read_layer,
    )
    test = featurise(
        model,
        tok,
        rows_for(world, tok, 600, 5, args.read, args.style, "heldout")[:256],
        args.read_layer,
    )
    if args.label_vectors:
        label_vectors(train + test, model.config.hidden_size)
    model = add_oracle_lora(model, args.lora_r, 2 * args.lora_r, 0.0, "all-linear")
    spec = InjectionSpec(args.site, args.mode, args.coefficient)
    collate = OracleCollator(tok.pad_token_id or 0)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20))
    rng = random.Random(0)
    curve = [{"step": 0, **evaluate(model, spec, collate, test)}]
    print(args.name, curve[-1], flush=True)
    model.train()
    for step in range(1, args.steps + 1):
        chunk = rng.sample(train, args.batch_size)
        loss, _ = loss_and_exact(model, spec, collate, chunk, [f["vectors"] for f in chunk])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        if step % args.eval_every == 0:
            curve.append(
                {
                    "step": step,
                    "train_loss": round(loss.item(), 4),
                    **evaluate(model, spec, collate, test),
                }
            )
            print(args.name, curve[-1], flush=True)
    result = {
        "name": args.name,
        "args": {k: v for k, v in vars(args).items() if k != "out"},
        "n_train_rows": len(train),
        "n_test_rows": len(test),
        "curve": curve,
        "seconds": round(time.perf_counter() - start_time, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as f:
        f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
