"""The toy-world steering experiment's ``results.md``, written from its results (see
``steering_toy``)."""

from __future__ import annotations


def markdown(results: dict) -> str:
    """A table per persona and scale: behaviour, fluency and the oracle's reading."""
    s = results["settings"]
    u = results["unsteered"]
    lines = [
        "# Steering through the oracle (toy world)",
        "",
        f"{s['n_eval']} held-out neutral prompts (no system prompt); "
        f"{'steering LoRA' if s.get('method') == 'lora' else 'vector'}"
        f"{' (added to the reply only)' if s.get('apply') == 'reply' else ''}"
        f"{' (added at the reply start only)' if s.get('apply') == 'first' else ''}"
        + (
            f" (generated with apply '{s['generate_apply']}')"
            if s.get("generate_apply") not in (None, s.get("apply"))
            else ""
        )
        + f" optimised on "
        f"{s['n_train']} training prompts for {s['steps']} steps (lr {s['lr']}, KL weight "
        f"{s['kl_weight']}, max norm {s['max_norm']}) so that the oracle answers "
        f'"{s["steer_question"]}" with the persona, reading '
        + (
            "the unsteered target's own reply to each prompt"
            if s.get("read") == "reply"
            else "the prompt's tokens"
        )
        + f'; the oracle\'s reading is checked with the held-out phrasing "{s["check_question"]}"'
        + (" on the steered replies" if s.get("read") == "reply" else "")
        + f". Unsteered reply perplexity {u['perplexity']:.2f}. "
        + (
            f"The scale each verdict uses is chosen on {s['n_val']} other held-out prompts "
            + (
                "(of those that pass there, the one with the largest smaller margin to the two "
                "bars, min(style / bar, 2 / ppl x); else the most on-style fluent one), then "
                if s.get("choose") == "margin"
                else "(the most on-style of those that pass there, else the most on-style fluent "
                "one), then "
            )
            + "measured on the prompts above."
            if s.get("n_val")
            else "No validation prompts: a persona passes if any scale passes."
        ),
        "",
        "Style rate: share of replies holding one of the persona's style words. Pass: style rate "
        ">= 30% (or >= 5x a non-zero baseline) and a perplexity ratio <= 2; the random vector "
        "(same norm) must not pass. Two perplexity ratios: `ppl x` is the issue's (steered "
        "replies vs unsteered replies, both under the unsteered model with no system prompt; "
        "in-character text is itself improbable there), `ppl x as persona` scores the steered "
        "replies under the unsteered model told the persona by a system prompt, against that "
        "model's own in-character replies.",
        "",
        "| persona | vector | scale | style rate | baseline | ppl x | ppl x as persona "
        "| oracle names it | passes | passes as persona |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    yes = {True: "yes", False: "no"}
    for persona, e in results["personas"].items():
        told = e["system_prompted"]
        lines.append(
            f"| {persona} | system prompt | - | {told['style_rate']:.2f} | "
            f"{e['baseline_style_rate']:.2f} | - | 1.00 | - | - | - |"
        )
        for kind, rows in e["scales"].items():
            for scale, r in rows.items():
                lines.append(
                    f"| {persona} | {kind} | {scale} | {r['style_rate']:.2f} | "
                    f"{e['baseline_style_rate']:.2f} | {r['ppl_ratio']:.2f} | "
                    f"{r['ppl_ratio_as_persona']:.2f} | {r['oracle_names_persona']:.2f} | "
                    f"{yes[r['passes']]} | {yes[r['passes_as_persona']]} |"
                )
    lines += [
        "",
        "| persona | norm / residual | answer NLL first -> last | chosen scale | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    for persona, e in results["personas"].items():
        if e["behaviour_passes"] and not e["random_passes"]:
            verdict = "steers behaviour, fluent by both measures (random control does not)"
        elif e["behaviour_passes_as_persona"] and not e["random_passes_as_persona"]:
            verdict = "steers behaviour, fluent as the persona; fails the no-system perplexity bar"
        elif e["oracle_fooled_only"]:
            verdict = "changes the oracle's answer but not the behaviour"
        elif e["random_passes"] or e["random_passes_as_persona"]:
            verdict = "random control passes too: not specific"
        else:
            verdict = "neither"
        first, last = e["answer_nll_first_last"]
        shown = e["norm_over_residual"]
        lines.append(
            f"| {persona} | {'LoRA' if shown is None else f'{shown:.2f}'} | "
            f"{first:.2f} -> {last:.2f} | "
            f"{e.get('chosen_scale') if e.get('chosen_scale') is not None else 'any'} | {verdict} |"
        )
    summary = results["summary"]
    lines += [
        "",
        f"Passing (issue's perplexity): {summary['personas_passing'] or 'none'}; passing "
        f"(perplexity as persona): {summary['personas_passing_as_persona'] or 'none'}; "
        f"oracle-only: {summary['oracle_fooled_only'] or 'none'}; {summary['seconds']} s.",
        "",
    ]
    return "\n".join(lines)
