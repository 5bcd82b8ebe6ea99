"""What ``oracle audit`` takes, defined once (its command-line options are generated from these
fields, as the other commands' are from their configs; the ``--ray-*`` options come from
:class:`audit.ray_config.RayConfig`)."""

from __future__ import annotations

from dataclasses import dataclass

from oracle.fields import check_fields, setting
from oracle.worlds import WORLD_HELP


@dataclass
class AuditOptions:
    """The options of ``oracle audit``."""

    logs: str | None = setting(None, "Log directory written by `oracle capture --input`.")
    question: list[str] | None = setting(
        None, "A question to ask of every record (repeatable).", repeat=True
    )
    questions: str | None = setting(
        None,
        "File of questions: one per line, or JSONL/JSON with 'question' and optional 'yes_no'.",
    )
    out: str | None = setting(
        None, "Output directory; running again with the same options resumes."
    )
    oracle: str | None = setting(
        None, "Oracle directory (default: the --world's; with none, the toy world's)."
    )
    target: str | None = setting(None, "Base model for the oracle (default: the oracle's own).")
    world: str | None = setting(None, WORLD_HELP)
    engine: str = setting("hf", "Engine: hf | vllm.", choices=("hf", "vllm"))
    batch_size: int = setting(16, "Pairs per oracle call.", ge=1)
    max_new_tokens: int = setting(16, "Longest answer, in tokens.", ge=1)
    max_positions: int | None = setting(
        None, "Give the oracle only the last K positions of longer records.", ge=1
    )
    shard: str | None = setting(
        None, "I/N: audit only part I (0-based) of N; join with `oracle audit merge`."
    )
    yes_no: str = setting(
        "auto",
        "Which questions get P(yes): auto (Is/Does/... questions), all, none.",
        choices=("auto", "all", "none"),
    )
    threshold: float = setting(0.5, "Flag records whose P(yes) is at least this, in the report.")
    dtype: str = setting("auto", "auto | float32 | bfloat16 | float16")
    device: str = setting("auto", "auto | cpu | cuda | cuda:N")
    force: bool = setting(False, "Use the oracle even if its base-model fingerprint differs.")
    ray: bool = setting(
        False,
        "Run on Ray: a pool of engine actors (--ray-actors), the log read by the workers; a "
        "local Ray unless --ray-address. Needs the ray extra.",
    )

    def __post_init__(self) -> None:
        check_fields(self)
