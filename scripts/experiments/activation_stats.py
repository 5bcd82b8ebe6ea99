"""How much of a target's activation vectors is their shared mean, per read layer: the
statistic behind centred injection (``oracle/centering.py``).

For the first ``--n`` training conversations of the SmolLM2 world with a persona or the default
prompt (read after the system prompt, with the assistant header), per layer: the mean norm of
the vectors, the norm of their mean, their mean cosine with it, the same at the last token, the
share of the last token's squared norm that the mean holds, the share of its variance between
persona labels, and the dimensions with the largest mean magnitude (before centring) and the
largest variance (after).

    python -m scripts.experiments.activation_stats --layers 1,15,28 --n 300
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch

from oracle.capture import hidden_at_layers
from oracle.inputs import TargetInput, tokenize_input
from oracle.models import load_model
from oracle.positions import select_positions
from worlds.smol.build import read_jsonl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="1,15,28")
    parser.add_argument("--n", type=int, default=300, help="training conversations looked at")
    parser.add_argument("--work", type=Path, default=Path(".cache/smol_world"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    layers = [int(x) for x in args.layers.split(",")]
    model, tok = load_model("smollm2-135m", dtype="auto", device="cpu")
    convs = read_jsonl(args.work / "conversations_train.jsonl")[: args.n]
    convs = [c for c in convs if c["kind"] in ("persona", "default")]
    vecs: dict[int, list[torch.Tensor]] = defaultdict(list)
    labels = []
    for conv in convs:
        target = TargetInput(messages=conv["messages"], add_generation_prompt=True)
        tokenized = tokenize_input(tok, target)
        read = select_positions(tokenized, "non_system")
        ids = torch.tensor([tokenized.input_ids])
        with torch.no_grad():
            seen = hidden_at_layers(model, ids, None, layers)
        for layer in layers:
            vecs[layer].append(seen[layer][0, read].float())
        labels.append(conv["persona"] or "none")
    out = {"conversations": len(convs), "layers": {}}
    for layer in layers:
        every = torch.cat(vecs[layer])
        mean = every.mean(0)
        last = torch.stack([v[-1] for v in vecs[layer]])
        cos = torch.nn.functional.cosine_similarity(every, mean[None], dim=-1)
        last_cos = torch.nn.functional.cosine_similarity(last, last.mean(0)[None], dim=-1)
        centred = last - last.mean(0)
        groups: dict[str, list[torch.Tensor]] = defaultdict(list)
        for v, label in zip(centred, labels, strict=True):
            groups[label].append(v)
        within = sum(
            ((torch.stack(g) - torch.stack(g).mean(0)) ** 2).sum() for g in groups.values()
        )
        variance = (every - mean).pow(2).mean(0)
        row = {
            "norm": float(every.norm(dim=-1).mean()),
            "mean_norm": float(mean.norm()),
            "cosine_with_mean": float(cos.mean()),
            "last_token_cosine_with_mean": float(last_cos.mean()),
            "last_token_mean_share_of_squared_norm": float(
                last.mean(0).norm() ** 2 / (last.norm(dim=-1) ** 2).mean()
            ),
            "last_token_between_label_variance_share": float(1 - within / (centred**2).sum()),
            "top_mean_dims": every.abs().mean(0).topk(3).indices.tolist(),
            "top_variance_dims_after_centring": variance.topk(3).indices.tolist(),
            "top_variance_share": float(variance.topk(1).values[0] / variance.sum()),
        }
        out["layers"][str(layer)] = row
        print(
            f"block {layer}: norm {row['norm']:.0f}, mean's norm {row['mean_norm']:.0f}, cosine "
            f"with the mean {row['cosine_with_mean']:.3f} (last token "
            f"{row['last_token_cosine_with_mean']:.3f}; the mean holds "
            f"{row['last_token_mean_share_of_squared_norm']:.0%} of its squared norm; between "
            f"personas {row['last_token_between_label_variance_share']:.0%} of the rest); "
            f"largest dims {row['top_mean_dims']}"
        )
    if args.out:
        args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
