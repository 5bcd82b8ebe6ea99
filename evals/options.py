"""What ``oracle eval`` takes, defined once: :class:`EvalOptions` (its command-line options are
generated from these fields, as the other commands' are from their configs) and
:func:`run_spec`, the :class:`~evals.evaluate.RunSpec` they describe."""

from __future__ import annotations

from dataclasses import dataclass

from oracle.errors import OracleInputError
from oracle.fields import check_fields, setting
from oracle.worlds import WORLD_HELP


@dataclass
class EvalOptions:
    """The options of ``oracle eval``."""

    suite: list[str] | None = setting(
        None,
        "A suite file (JSONL, or .jsonl.xz/.jsonl.gz; the format in evals/README.md); repeat "
        "for several. Default: the --world's suite files (the default world's with no model "
        "given).",
        repeat=True,
    )
    family: str | None = setting(
        None, "Only these question families (a comma list), e.g. persona,secret."
    )
    world: str | None = setting(None, WORLD_HELP)
    target: str | None = setting(
        None, "Target model: hub id or local directory (default: the oracle's base)."
    )
    oracle: str | None = setting(
        None, "Oracle directory (default, with no --target: the world's oracle)."
    )
    out: str = setting("results", "Directory for results.json, report.md and report.html.")
    quick: bool = setting(
        False, "A seeded random subsample: 40 test conversations per suite, 2000 train items."
    )
    seed: int = setting(0, "Seed of suites, subsampling, controls and bootstrap.")
    synthetic: bool = setting(
        False, "Use the small synthetic world (pipeline checks, tiny models)."
    )
    ablations_dir: str | None = setting(
        None,
        "Directory of trained ablation oracles (default: the world's, where its manifest names "
        "one and its own suites are evaluated).",
    )
    ablations_only: bool = setting(
        False, "Recompute only the ablations and merge them into --out's results.json."
    )
    capture_only: bool = setting(
        False,
        "Only capture the train items into the feature cache (a long job to run in the "
        "background first; the evaluation then captures nothing again).",
    )
    skip_ablations: bool = setting(False, "Run the suites only (no ablations).")
    n_test: int | None = setting(
        None, "Test conversations (groups) per suite (a seeded random sample).", ge=1
    )
    n_train: int | None = setting(
        None,
        "Train items for the probe and the text-only reader (default: every train item of the "
        "suites; the toy world's are as many conversations as its oracle was trained on).",
        ge=1,
    )
    write_suites: str | None = setting(
        None, "Also write the items evaluated as one suite file (JSONL) here."
    )
    feature_cache: str = setting(
        "auto",
        "Directory where the probe's train features are cached, so that a long run resumes "
        "and a rerun captures nothing again ('auto': $ORACLE_CACHE_DIR/eval-features or "
        "~/.cache/activation-oracle/eval-features; 'none': no cache).",
    )
    max_new_tokens: int = setting(12, "Longest generated answer, in tokens.", ge=1)
    batch_size: int = setting(32, "Rows per forward pass.", ge=1)
    engine: str = setting("hf", "Engine: hf (transformers) or vllm.", choices=("hf", "vllm"))
    device: str = setting("auto", "auto | cpu | cuda | cuda:N")

    def __post_init__(self) -> None:
        check_fields(self)
        if self.ablations_only and self.skip_ablations:
            raise OracleInputError("give at most one of --ablations-only and --skip-ablations")

    @property
    def parts(self) -> str:
        """Which parts run: capture, ablations, suites or all (``RunSpec.parts``)."""
        if self.capture_only:
            return "capture"
        return "ablations" if self.ablations_only else ("suites" if self.skip_ablations else "all")


def run_spec(opts: EvalOptions, command: str = "oracle eval", show_progress: bool = True):
    """The :class:`~evals.evaluate.RunSpec` that ``opts`` describe: a named world's suite
    files, oracle and ablation oracles filled in where not given (the default world's when
    nothing at all is given), the feature cache's 'auto' and 'none' resolved."""
    from evals.captures import feature_cache_dir
    from evals.evaluate import RunSpec
    from evals.runner import EvalConfig
    from oracle.worlds import default_world, get_world, resolve

    suite, target, oracle = list(opts.suite or []), opts.target, opts.oracle
    ablations_dir = opts.ablations_dir
    name = opts.world
    own_models = name is None and (target is not None or oracle is not None)
    if name is None and not suite and not opts.synthetic:
        name = default_world()  # its suite files; its oracle too where no model is given
    if name is not None:
        world = get_world(name)
        if not world.suites and not suite:
            raise OracleInputError(f"the {world.name} world names no suite files: give --suite")
        if not (suite or own_models or ablations_dir):
            found = world.ablations_dir()
            ablations_dir = str(found) if found is not None else None
        suite = suite or [str(p) for p in world.suite_files()]
        if not own_models:
            target, oracle = resolve(name, target, oracle)
    cache = {"auto": str(feature_cache_dir()), "none": None}.get(
        opts.feature_cache, opts.feature_cache
    )
    families = [f.strip() for f in opts.family.split(",") if f.strip()] if opts.family else None
    return RunSpec(
        suite_files=suite,
        families=families,
        target=target,
        oracle=oracle,
        out_dir=opts.out,
        quick=opts.quick,
        seed=opts.seed,
        synthetic=opts.synthetic,
        ablations_dir=ablations_dir,
        engine=opts.engine,
        device=opts.device,
        parts=opts.parts,
        show_progress=show_progress,
        command=command,
        write_suites=opts.write_suites,
        eval=EvalConfig(
            n_test=opts.n_test,
            n_train=opts.n_train,
            max_new_tokens=opts.max_new_tokens,
            batch_size=opts.batch_size,
            feature_cache=cache,
        ),
    )
