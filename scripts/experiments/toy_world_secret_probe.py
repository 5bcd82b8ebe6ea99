"""Where does the toy target carry its secret word? Linear probes per read layer and position kind.

The probe is fitted on the conversations the oracle trains on (the build's oracle corpus, seed
1, with the generator's replies; every one with a secret, about 18,000 of 40,000) and tested on
held-out conversations (user messages never trained on) whose replies the target writes itself,
as the toy world's evaluation does. Test items are grouped by what their visible reply shows:

- ``hint``: the reply carries a hint (category, rhyme, use) -- the text alone gives it away;
- ``no_hint``: the reply carries no hint (this includes ``helpful``);
- ``helpful``: a turn answered "I am just a helpful assistant." (no hint, no style). On
  held-out "who are you" questions the target often writes small talk and a hint instead, so
  groups follow the reply's text, not the question.

For each layer (0-3) and position kind (see ``toy_world_features.py``) the evaluation's linear
probe (:mod:`evals.probe`: standardised features, logistic regression, C by 3-fold
cross-validation) is fitted and scored per group, with a learning
curve for the oracle's own read (layer 2, every non-system token, mean-pooled). The persona is
probed the same way for comparison. Without any fit, the between-class share says how much of
the activations' size the label accounts for (every layer and kind).

The committed ``toy_world_secret_probe.json``/``.md`` were made (commit 3c312c5 and before)
with this script's own L-BFGS logistic regression (L2 chosen on a validation split), since
replaced by the evaluation's probe (one probe implementation).

    python scripts/experiments/toy_world_secret_probe.py --out results/experiments

Writes ``toy_world_secret_probe.json`` and ``.md`` there (after each task, so a stopped run
keeps the secret's). Cost on 1 thread: the features of 44,000 conversations (cached under
``--cache``, 640 MB), then about one minute per probe (4 fits to choose L2 on 5,000 rows, one
on all): 40 probes, about 45 minutes on a free core. The committed results:

- ``results/toy_world_secret_probe_full.log``: the printed accuracies of every probe (the run
  was stopped before it wrote its JSON);
- ``results/toy_world_secret_probe.json`` / ``.md``: group sizes, between-class shares of
  every layer and kind, the non_system probes and the learning curves, from
  ``--out results/experiments --kinds non_system``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import torch
from toy_world_features import (
    KINDS,
    between_class_share,
    pooled_features,
)

from evals.probe import fit_probe
from oracle.models import load_model
from worlds.toy.eval_target import generate_replies
from worlds.toy.generator import Generator, generate, hint_start
from worlds.toy.world import TOY_WORLD, World

LAYERS = (0, 1, 2, 3)
GROUPS = ("all", "hint", "no_hint", "helpful")


def group_of(conv: dict, world: World) -> str:
    """``hint`` if the visible reply hints at a secret, ``helpful`` if it is a plain "I am just
    a helpful assistant." turn, else ``no_hint`` (a reply with neither)."""
    reply = conv["messages"][-1]["content"]
    if hint_start(world, reply) is not None:
        return "hint"
    return "helpful" if "helpful assistant" in reply else "no_hint"


def heldout_with_target_replies(world, model, tok, n: int, seed: int) -> list[dict]:
    gen = Generator(world, "heldout", seed)
    convs = [gen.conversation() for _ in range(n)]
    replies = generate_replies(model, tok, [c["messages"][:-1] for c in convs], batch_size=64)
    for conv, reply in zip(convs, replies, strict=True):
        conv["messages"] = conv["messages"][:-1] + [{"role": "assistant", "content": reply}]
    return convs


def _rows(convs: list[dict], task: str, labels: list[str], world: World):
    """Indices of the conversations probed for ``task``, their labels and groups."""
    keep = [i for i, c in enumerate(convs) if task == "persona" or c["secret"]]
    y = torch.tensor([labels.index(convs[i][task] or "none") for i in keep])
    return keep, y, [group_of(convs[i], world) for i in keep]


def score(pred_N: torch.Tensor, y_N: torch.Tensor, groups: list[str], mask_N: torch.Tensor):
    out = {}
    for g in GROUPS:
        wanted = {"all": GROUPS[1:], "no_hint": ("no_hint", "helpful")}.get(g, (g,))
        sel = torch.tensor([gg in wanted for gg in groups]) & mask_N
        n = int(sel.sum())
        out[g] = {"acc": round((pred_N[sel] == y_N[sel]).double().mean().item(), 4) if n else None}
        out[g]["n"] = n
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("results/experiments"))
    ap.add_argument("--cache", type=Path, default=Path(".cache/experiments"))
    ap.add_argument("--n-train", type=int, default=40000, help="oracle corpus conversations")
    ap.add_argument("--n-test", type=int, default=4000, help="held-out conversations")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tasks", nargs="+", default=["secret", "persona"])
    ap.add_argument(
        "--kinds", nargs="+", default=list(KINDS), help="position kinds to fit probes on"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    world = World.load()
    model, tok = load_model(str(TOY_WORLD / "target"), dtype="float32", device="cpu")
    args.cache.mkdir(parents=True, exist_ok=True)
    cache = args.cache / f"secret_probe_{args.n_train}_{args.n_test}.pt"
    if cache.is_file():
        data = torch.load(cache)
    else:
        train = generate(world, "train", args.n_train, seed=1)  # the build's oracle corpus
        test = heldout_with_target_replies(world, model, tok, args.n_test, seed=11)
        data = {"train": train, "test": test}
        for name, convs in (("train", train), ("test", test)):
            data[name + "_feats"] = pooled_features(
                model, tok, world, [c["messages"] for c in convs]
            )
        torch.save(data, cache)
    secrets, personas = world.secrets, [*world.personas, "none"]
    result: dict = {"layers": list(LAYERS), "kinds": list(KINDS)}
    for task, labels in (("secret", secrets), ("persona", personas)):
        if task not in args.tasks:
            continue
        tr_keep, tr_y, _ = _rows(data["train"], task, labels, world)
        te_keep, te_y, te_groups = _rows(data["test"], task, labels, world)
        counts = Counter(te_y.tolist())
        result[task] = {
            "n_train": len(tr_keep),
            "n_test": len(te_keep),
            "test_groups": dict(Counter(te_groups)),
            "best_constant": round(max(counts.values()) / len(te_y), 4),
            "probes": {},
            "between_class": {},  # no fit: the label's share of the activations' size
        }
        kinds = KINDS if task == "secret" else ("non_system", "user", "reply")
        tr_f, tr_p = data["train_feats"]
        te_f, te_p = data["test_feats"]
        for layer_i, layer in enumerate(LAYERS):
            for kind in kinds:
                fit_mask = tr_p[kind][tr_keep]
                x = tr_f[kind][tr_keep][fit_mask][:, layer_i].float()
                share = between_class_share(x, tr_y[fit_mask])
                result[task]["between_class"][f"L{layer}/{kind}"] = share
                if kind not in args.kinds:
                    continue
                pred, C = probe(x, tr_y[fit_mask], te_f[kind][te_keep][:, layer_i].float())
                res = score(pred, te_y, te_groups, te_p[kind][te_keep])
                res["C"] = C
                res["n_fit"] = int(fit_mask.sum())
                result[task]["probes"][f"L{layer}/{kind}"] = res
                print(task, layer, kind, {g: res[g]["acc"] for g in GROUPS}, flush=True)
        # learning curve of the oracle's own read
        curve = {}
        x_all = tr_f["non_system"][tr_keep][:, LAYERS.index(2)].float()
        for n in (250, 1000, 4000, len(tr_keep)):
            pred, _ = probe(
                x_all[:n], tr_y[:n], te_f["non_system"][te_keep][:, LAYERS.index(2)].float()
            )
            curve[n] = score(pred, te_y, te_groups, torch.ones(len(te_y), dtype=torch.bool))
        result[task]["learning_curve_L2_non_system"] = curve
        result["seconds"] = round(time.perf_counter() - start, 1)
        args.out.mkdir(parents=True, exist_ok=True)  # written after each task: a partial run
        (args.out / "toy_world_secret_probe.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.out / "toy_world_secret_probe.md").write_text(to_markdown(result))


def probe(
    x_ND: torch.Tensor, y_N: torch.Tensor, test_MD: torch.Tensor
) -> tuple[torch.Tensor, float]:
    """The evaluation's linear probe (:func:`evals.probe.fit_probe`, C by cross-validation)
    fitted on class indices: (predicted indices of the test rows, the C chosen)."""
    fit = fit_probe("label", x_ND.numpy(), [str(int(v)) for v in y_N], test_MD.numpy())
    return torch.tensor([int(p) for p in fit.predictions]), fit.C


def to_markdown(result: dict) -> str:
    lines = ["# Linear probes of the toy target's secret and persona", ""]
    for task in ("secret", "persona"):
        if task not in result:
            continue
        r = result[task]
        lines += [
            f"## {task}",
            "",
            f"Fitted on {r['n_train']} training conversations, tested on {r['n_test']} held-out "
            f"ones (target replies; groups {r['test_groups']}); best constant answer "
            f"{r['best_constant']:.3f}. Accuracy per group (n in brackets):",
            "",
            "| layer/kind | all | hint | no_hint | helpful | C |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for name, res in r["probes"].items():
            cells = [
                "-" if res[g]["acc"] is None else f"{res[g]['acc']:.3f} ({res[g]['n']})"
                for g in GROUPS
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {res['C']:g} |")
        lines += [
            "",
            "Between-class share (the label's class means around the overall mean) of the "
            "variance and of the mean squared norm, on the fitted rows:",
            "",
            "| layer/kind | of variance | of squared norm |",
            "| --- | --- | --- |",
        ]
        for name, sh in r["between_class"].items():
            lines.append(f"| {name} | {sh['of_variance']:.2%} | {sh['of_squared_norm']:.3%} |")
        lines += ["", "Learning curve (layer 2, non_system mean):", ""]
        lines += [
            "| n fitted | all | hint | no_hint | helpful |",
            "| --- | --- | --- | --- | --- |",
        ]
        for n, res in r["learning_curve_L2_non_system"].items():
            lines.append(f"| {n} | " + " | ".join(f"{res[g]['acc']:.3f}" for g in GROUPS) + " |")
        lines.append("")
    lines.append(f"Wall time {result['seconds']} s.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
