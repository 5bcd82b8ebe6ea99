"""``oracle eval``'s options are generated from :class:`evals.options.EvalOptions`: the
command line and the library agree on every default and help string, a list option is given
once per item, and the options describe the run they should (a named world's suite and
oracle, the toy world's ablations, the part to run)."""

from __future__ import annotations

import pytest
import typer

from evals.options import EvalOptions, run_spec
from oracle.errors import OracleInputError
from oracle.fields import defaults, describe
from oracle.worlds import get_world
from oracle_cli import app, load_commands
from oracle_cli.eval import eval_cmd
from oracle_cli.options import config_kwargs, option_defaults
from worlds.toy.ablations import ABLATIONS_DIR


def test_every_option_is_a_field_with_its_default_and_help():
    cli = option_defaults(eval_cmd)
    assert cli == defaults(EvalOptions)
    group = typer.Typer(add_completion=False)
    group.command("x")(eval_cmd)
    helps = {p.name: p.help for p in typer.main.get_command(group).params}
    for info in describe(EvalOptions):
        assert helps[info.name].startswith(info.help), info.name


def test_a_list_option_is_repeated_not_yaml(monkeypatch):
    """--suite a --suite b reaches the run as two files (the generated options of other
    commands take YAML for lists; a suite path is not YAML)."""
    import evals.evaluate

    seen = {}

    def fake_run(spec):  # the evaluation itself is not what this checks
        seen["spec"] = spec
        raise SystemExit(0)

    monkeypatch.setattr(evals.evaluate, "run_eval", fake_run)
    load_commands()
    from typer.testing import CliRunner

    result = CliRunner().invoke(
        app, ["eval", "--suite", "a b.jsonl", "--suite", "c.jsonl", "--oracle", "o"]
    )
    assert result.exit_code == 0, result.output
    assert seen["spec"].suite_files == ["a b.jsonl", "c.jsonl"]
    assert seen["spec"].oracle == "o"


def test_a_named_world_fills_in_its_suite_and_oracle():
    smol = get_world("smol")
    spec = run_spec(EvalOptions(world="smol", feature_cache="none"))
    assert spec.suite_files == [str(smol.suite())]
    assert spec.oracle == str(smol.oracle_dir()) and spec.target is None
    assert spec.ablations_dir is None and spec.eval.feature_cache is None
    mine = run_spec(EvalOptions(world="smol", suite=["mine.jsonl"], oracle="o"))
    assert mine.suite_files == ["mine.jsonl"] and mine.oracle == "o"


def test_no_option_is_the_default_world_with_its_suite_files_oracle_and_ablations():
    toy = get_world("toy")
    spec = run_spec(EvalOptions())
    assert spec.suite_files == [str(p) for p in toy.suite_files()] and len(spec.suite_files) == 5
    assert spec.target is None and spec.oracle == str(toy.oracle_dir())
    assert spec.ablations_dir == (str(ABLATIONS_DIR) if ABLATIONS_DIR.is_dir() else None)
    assert run_spec(EvalOptions(synthetic=True)).ablations_dir is None
    # the user's own oracle on the default world's suites: no world oracle, no ablations
    own = run_spec(EvalOptions(oracle="mine"))
    assert own.oracle == "mine" and own.suite_files == spec.suite_files
    assert own.ablations_dir is None


def test_a_world_without_suite_files_asks_for_one(tmp_path, monkeypatch):
    import oracle.worlds

    toy = get_world("toy")
    bare = type(toy)(name="bare", description="", folder=toy.folder)
    monkeypatch.setattr(oracle.worlds, "get_world", lambda name: bare)
    with pytest.raises(OracleInputError, match="names no suite files: give --suite"):
        run_spec(EvalOptions(world="bare"))


@pytest.mark.parametrize(
    ("flags", "parts"),
    [({}, "all"), ({"skip_ablations": True}, "suites"), ({"ablations_only": True}, "ablations"),
     ({"capture_only": True}, "capture")],
)  # fmt: skip
def test_the_part_to_run(flags, parts):
    assert run_spec(EvalOptions(**flags)).parts == parts


@pytest.mark.parametrize(
    ("options", "needle"),
    [({"ablations_only": True, "skip_ablations": True}, "at most one"),
     ({"engine": "tgi"}, "engine"), ({"n_test": 0}, "n_test"), ({"batch_size": 0}, "batch_size")],
)  # fmt: skip
def test_bad_options_are_refused_before_anything_loads(options, needle):
    with pytest.raises(OracleInputError, match=needle):
        EvalOptions(**config_kwargs(EvalOptions, options))
