"""A steering vector ready to use: made (optimised through the oracle, or by contrastive
activation addition), then its apply mode and scale chosen on validation prompts
(:mod:`oracle.steering.choose`) and saved with it. ``oracle steer`` and ``POST /v1/steer`` both
come here, so a vector made either way is used the same way."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict

from oracle.oracle import ActivationOracle
from oracle.steering.caa import caa_vector
from oracle.steering.choose import (
    UseChoice,
    UseChooser,
    oracle_effect,
    persona_effect,
    split_validation,
)
from oracle.steering.config import CAA, SteerConfig
from oracle.steering.io import SteeringVector
from oracle.steering.run import resolve_layers, steer

log = logging.getLogger(__name__)


def caa_steering_vector(
    ao: ActivationOracle, prompts: Sequence[str], cfg: SteerConfig
) -> SteeringVector:
    """The CAA vector at the steering layer (the same default as a vector optimised through
    the oracle: the block before the oracle's read layer), at scale 1."""
    layer, read_layer = resolve_layers(ao, cfg.layer, cfg.read_layer)
    vector = caa_vector(
        ao, prompts, cfg.persona_prompt or "", layer, read=cfg.read, reply_tokens=cfg.reply_tokens
    )
    return SteeringVector(
        vector=vector,
        layer=layer,
        scale=1.0,
        question=cfg.question or "",
        answer=cfg.answer or "",
        read_layer=read_layer,
        base_model=ao.config.base_model,
        apply=cfg.apply or "all",
        settings=asdict(cfg),
    )


def chooser_for(
    ao: ActivationOracle, vec: SteeringVector, cfg: SteerConfig, val_prompts: Sequence[str]
) -> UseChooser:
    """The chooser of ``vec``'s apply mode and scale on ``val_prompts``, its effect measured
    through the oracle (or, for CAA, by the persona prompt's likelihood gain)."""
    if cfg.method == CAA:
        effect = persona_effect(ao, cfg.persona_prompt or "")
    else:
        effect = oracle_effect(ao, cfg.question or "", cfg.answer or "", vec.read_layer)
    return UseChooser(
        ao, vec.vector, vec.layer, val_prompts, effect, max_new_tokens=cfg.reply_tokens
    )


def with_choice(vec: SteeringVector, choice: UseChoice) -> SteeringVector:
    """``vec`` set to be used as ``choice`` says (the grid kept in its metadata)."""
    vec.apply, vec.scale, vec.choice = choice.apply, choice.scale, choice.to_dict()
    return vec


def choose_for(
    ao: ActivationOracle,
    vec: SteeringVector,
    cfg: SteerConfig,
    val_prompts: Sequence[str],
    progress: Callable[[str], None] | None = None,
) -> SteeringVector:
    """``vec`` with its apply mode and scale chosen on ``val_prompts`` (and the grid saved)."""
    chooser = chooser_for(ao, vec, cfg, val_prompts)
    while not chooser.finished:
        line = chooser.step()
        if progress is not None:
            progress(line)
    choice = chooser.result()
    with_choice(vec, choice)
    log.info(
        "chosen: apply %s at scale %s (effect %.3f vs %.3f unsteered, perplexity x%.2f)",
        choice.apply,
        choice.scale,
        choice.effect,
        choice.base_effect,
        choice.ppl_ratio,
    )
    return vec


def make_steering_vector(
    ao: ActivationOracle,
    prompts: Sequence[str],
    cfg: SteerConfig,
    val_prompts: Sequence[str] | None = None,
    kl_prompts: Sequence[str] | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    choose: bool = True,
    progress: Callable[[str], None] | None = None,
) -> SteeringVector:
    """Make a vector from ``prompts`` (a quarter held out for validation unless
    ``val_prompts`` are given) and choose how to use it (unless ``choose`` is false)."""
    train, val = split_validation(prompts, val_prompts) if choose else (list(prompts), [])
    if cfg.method == CAA:
        vec = caa_steering_vector(ao, train, cfg)
    else:
        result = steer(ao, train, cfg, kl_prompts=kl_prompts, callback=callback)
        vec = result.steering_vector(ao.config.base_model)
    return choose_for(ao, vec, cfg, val, progress) if choose else vec
