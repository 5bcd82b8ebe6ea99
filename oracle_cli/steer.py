"""``oracle steer`` (optimise a steering vector or LoRA through the oracle) and ``oracle
generate`` (the target's reply, optionally steered)."""

from __future__ import annotations

import json
import logging
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Optional

import typer

from oracle.errors import OracleInputError
from oracle_cli.common import (
    MODEL_OPTIONS,
    DeviceOpt,
    DtypeOpt,
    ForceOpt,
    OracleOpt,
    TargetOpt,
    WorldOpt,
    resolve_models,
)
from oracle_cli.options import build_command, config_kwargs, field_options, option

log = logging.getLogger(__name__)


def read_prompts(path: Path, what: str = "--prompts") -> list[str]:
    """One prompt per non-blank line of ``path``."""
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        raise OracleInputError(f"{what} file {str(path)!r} does not exist") from None
    except UnicodeDecodeError:
        raise OracleInputError(f"{what} file {str(path)!r} is not UTF-8 text") from None
    prompts = [line.strip() for line in lines if line.strip()]
    if not prompts:
        raise OracleInputError(f"{what} file {str(path)!r} holds no prompt (one per line)")
    return prompts


def _load(
    world: str | None,
    target: str | None,
    oracle: Path | None,
    dtype: str,
    device: str,
    force: bool,
):
    from oracle.oracle import ActivationOracle

    target, oracle_dir = resolve_models(world, target, oracle)
    return ActivationOracle.load(target, oracle_dir, dtype=dtype, device=device, force=force)


def _steer(
    prompts: Path,
    out: Path,
    kl_prompts: Path | None,
    val_prompts: Path | None,
    choose: bool,
    world: str | None,
    target: str | None,
    oracle: Path | None,
    dtype: str,
    device: str,
    force: bool,
    **settings,
) -> None:
    """Make a steering vector: optimised so that the frozen oracle answers ANSWER to QUESTION
    about the target's activations (or a LoRA likewise), or by contrastive activation addition
    (--method caa --persona-prompt). A vector's apply mode and scale are then chosen on
    validation prompts (the largest effect whose replies stay fluent) and saved with it, so
    that `oracle generate --steer` uses them. Prints the output path."""
    from tqdm import tqdm

    from oracle.steering import SteerConfig, steer
    from oracle.steering.lora import save_steering_lora
    from oracle.steering.make import make_steering_vector

    cfg = SteerConfig(**config_kwargs(SteerConfig, settings))
    if cfg.method != "lora" and out.suffix != ".safetensors":
        raise OracleInputError(f"--out must end in .safetensors for a vector, got {str(out)!r}")
    texts = read_prompts(prompts)
    neutral = read_prompts(kl_prompts, "--kl-prompts") if kl_prompts else None
    val = read_prompts(val_prompts, "--val-prompts") if val_prompts else None
    ao = _load(world, target, oracle, dtype, device, force)
    bar = tqdm(total=cfg.steps if cfg.method != "caa" else 0, desc="steer", unit="step")

    def progress(_step: int, metrics: dict[str, float]) -> None:
        bar.update(1)
        bar.set_postfix(
            nll=f"{metrics['answer_nll']:.3f}",
            kl=f"{metrics['kl']:.4f}",
            norm=f"{metrics['norm']:.2f}",
        )

    try:
        if cfg.method == "lora":
            result = steer(ao, texts, cfg, kl_prompts=neutral, callback=progress)
        else:
            vec = make_steering_vector(
                ao, texts, cfg, val, neutral, progress, choose,
                progress=lambda line: typer.echo(f"  choosing: {line}", err=True),
            )  # fmt: skip
    finally:
        bar.close()
    if cfg.method == "lora":
        path = save_steering_lora(ao, result, out)
        curve = result.answer_nll
        typer.echo(
            f"answer NLL {curve[0]:.3f} -> {curve[-1]:.3f} over {len(curve)} steps", err=True
        )
        typer.echo(str(path))
        return
    path = vec.save(out)
    if vec.losses:
        nll = vec.settings.get("answer_nll") or vec.losses
        typer.echo(f"answer NLL {nll[0]:.3f} -> {nll[-1]:.3f} over {len(nll)} steps", err=True)
    if vec.choice:
        c = vec.choice
        typer.echo(
            f"use: apply {vec.apply!r} at scale {vec.scale} (effect {c['effect']:.3f} vs "
            f"{c['base_effect']:.3f} unsteered; perplexity x{c['ppl_ratio']:.2f}, at most "
            f"x{c['max_ppl_ratio']:g}); saved with the vector",
            err=True,
        )
    typer.echo(str(path))


def _steer_command():
    # The options of SteerConfig come from its fields (oracle.steering.config): one definition
    # of each setting for the library, this command and POST /v1/steer.
    from oracle.steering.config import SteerConfig

    params = [
        option(
            "prompts",
            Path,
            typer.Option(..., help="Text file of target prompts, one per line."),
        ),
        option(
            "out",
            Path,
            typer.Option(
                ...,
                help="Output: VEC.safetensors (+ VEC.json) for a vector; a directory for "
                "--method lora.",
            ),
        ),
        *field_options(SteerConfig),
        option(
            "kl_prompts",
            Optional[Path],  # noqa: UP045 - typer reads it at runtime
            typer.Option(
                None, help="Neutral prompts for the KL term, one per line (default: --prompts)."
            ),
        ),
        option(
            "val_prompts",
            Optional[Path],  # noqa: UP045 - typer reads it at runtime
            typer.Option(
                None,
                help="Validation prompts, one per line, on which the apply mode and scale are "
                "chosen (default: the last quarter of --prompts, held out of the optimisation).",
            ),
        ),
        option(
            "choose",
            bool,
            typer.Option(
                True,
                help="Choose the apply mode and scale on validation prompts (--no-choose: save "
                "the vector as optimised, scale 1).",
            ),
        ),
        *MODEL_OPTIONS,
    ]
    return build_command(_steer, params, _steer.__doc__ or "")


steer_cmd = _steer_command()


def generate_cmd(
    prompt: Annotated[str, typer.Option(help="The user message the target replies to.")],
    steer: Annotated[
        Path | None, typer.Option(help="A steering vector (.safetensors from `oracle steer`).")
    ] = None,
    steer_adapter: Annotated[
        Path | None, typer.Option(help="A steering LoRA directory (`oracle steer --method lora`).")
    ] = None,
    scale: Annotated[
        float | None,
        typer.Option(
            help="Multiplier of the vector (default: its saved scale), or of the steering "
            "LoRA's update (default 1)."
        ),
    ] = None,
    layer: Annotated[
        int | None, typer.Option(help="Block to add the vector at (default: its saved layer).")
    ] = None,
    apply: Annotated[
        str | None,
        typer.Option(
            help="Where to add the vector: 'all', 'reply' or 'first' (see `oracle steer "
            "--apply`; default: as it was optimised). A vector optimised on the reply may be "
            "added at the reply's start alone ('first'), usually at a larger scale."
        ),
    ] = None,
    max_tokens: Annotated[int, typer.Option(help="Longest reply, in tokens.")] = 64,
    temperature: Annotated[float, typer.Option(help="0 for greedy decoding.")] = 0.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass (temperature > 0).")] = 1.0,
    seed: Annotated[int | None, typer.Option(help="Sampling seed.")] = None,
    world: WorldOpt = None,
    target: TargetOpt = None,
    oracle: OracleOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON object instead of the reply alone.")
    ] = False,
    dtype: DtypeOpt = "auto",
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Generate the target's reply (its base model, the oracle adapter off), optionally steered;
    prints the reply alone on stdout."""
    from oracle.steering.generate import generate
    from oracle.steering.io import SteeringVector
    from oracle.steering.lora import STEER_ADAPTER, load_steering_lora, scaled_adapter

    if steer is not None and steer_adapter is not None:
        raise OracleInputError("give at most one of --steer and --steer-adapter")
    if layer is not None and steer is None:
        raise OracleInputError("--layer needs --steer")
    if apply is not None and steer is None:
        raise OracleInputError("--apply needs --steer")
    if scale is not None and steer is None and steer_adapter is None:
        raise OracleInputError("--scale needs --steer or --steer-adapter")
    vec = SteeringVector.load(steer) if steer is not None else None
    ao = _load(world, target, oracle, dtype, device, force)
    adapter = None
    if steer_adapter is not None:
        ao = load_steering_lora(ao, steer_adapter)
        adapter = STEER_ADAPTER
    used_scale = (vec.scale if scale is None else scale) if vec is not None else scale
    used_layer = (vec.layer if layer is None else layer) if vec is not None else None
    used_apply = (vec.apply if apply is None else apply) if vec is not None else None
    with ExitStack() as stack:
        if adapter is not None and scale is not None:
            stack.enter_context(scaled_adapter(ao.target, scale, adapter))
        reply = generate(
            ao,
            [prompt],
            vec.vector if vec is not None else None,
            used_layer,
            used_scale if vec is not None else 1.0,
            max_new_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            adapter=adapter,
            apply=used_apply or "all",
        )[0]
    if as_json:
        payload = {
            "reply": reply,
            "layer": used_layer,
            "scale": used_scale,
            "apply": used_apply,
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    typer.echo(reply)
