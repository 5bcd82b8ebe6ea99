"""One definition per setting: the command line, the HTTP request and the library object of a
config are built from its dataclass, and built with no arguments they agree on every default
(and on every help string)."""

from __future__ import annotations

from dataclasses import asdict, fields

import pytest
import typer

from oracle.errors import OracleInputError
from oracle.fields import check_fields, defaults, describe, setting
from oracle.steering.config import SteerConfig
from oracle_cli.options import config_kwargs, option_defaults
from oracle_cli.serve import serve_cmd
from oracle_cli.steer import steer_cmd
from serving.settings import ServeSettings
from serving.steer_schemas import SteerRequest

REQUIRED = {"question": "What persona is the assistant playing?", "answer": "A pirate."}


def cli_help(command) -> dict[str, str]:
    group = typer.Typer(add_completion=False)
    group.command("x")(command)
    return {p.name: p.help for p in typer.main.get_command(group).params}


def test_steer_cli_http_and_library_agree_on_every_default():
    field_defaults = defaults(SteerConfig)
    cli = option_defaults(steer_cmd)
    http = {name: f.default for name, f in SteerRequest.model_fields.items()}
    for name, default in field_defaults.items():
        assert cli[name] == default, name
        if name in http and name not in REQUIRED:  # HTTP's vector method needs both
            assert http[name] == default, name
    excluded = set(field_defaults) - set(http)
    # the vector method alone
    assert excluded == {"method", "lora_r", "lora_alpha", "positions", "persona_prompt"}
    # built with only the required fields, the three give the same config
    library = SteerConfig(**REQUIRED)
    from_cli = SteerConfig(**config_kwargs(SteerConfig, {**cli, **REQUIRED}))
    body = SteerRequest(prompts=["Hello."], **REQUIRED)
    exclude = {"prompts", "kl_prompts", "val_prompts", "background", "choose"}
    from_http = SteerConfig(**body.model_dump(exclude=exclude))
    assert asdict(from_cli) == asdict(library) == asdict(from_http)


def test_the_default_steering_is_the_recipe_that_passed():
    """results/steering/README.md: read the reply, add the vector to the reply while
    optimising, no KL term, 60 steps at lr 0.05."""
    config = SteerConfig(**REQUIRED)
    assert (config.read, config.apply, config.kl_weight) == ("reply", "reply", 0.0)
    assert (config.steps, config.lr, config.method) == (60, 0.05, "vector")
    lora = SteerConfig(**REQUIRED, method="lora")  # the LoRA is applied everywhere
    assert lora.apply == "all" and lora.lora_alpha == 2 * lora.lora_r


def test_serve_cli_and_settings_agree_on_every_default(monkeypatch):
    monkeypatch.delenv("ORACLE_API_KEY", raising=False)
    cli = option_defaults(serve_cmd)
    library = asdict(ServeSettings())
    assert {k: cli[k] for k in library} == library
    assert set(cli) - set(library) == {"log_level", "threads"}


@pytest.mark.parametrize(
    "cls, command, http",
    [(SteerConfig, steer_cmd, SteerRequest), (ServeSettings, serve_cmd, None)],
)
def test_help_comes_from_the_field(cls, command, http):
    helps = cli_help(command)
    for info in describe(cls):
        assert info.help, f"{cls.__name__}.{info.name} has no help"
        assert helps[info.name].startswith(info.help), info.name
        if http is not None and info.name in http.model_fields:
            assert http.model_fields[info.name].description == info.help


def test_bounds_and_choices_are_checked_once_for_all():
    with pytest.raises(OracleInputError, match="steps must be >= 1"):
        SteerConfig(**REQUIRED, steps=0)
    with pytest.raises(OracleInputError, match="read must be one of"):
        SteerConfig(**REQUIRED, read="everything")
    with pytest.raises(OracleInputError, match="--queue-depth must be >= 1"):
        ServeSettings(queue_depth=0).validate()
    assert SteerRequest.model_json_schema()["properties"]["steps"]["minimum"] == 1
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        SteerRequest(prompts=["Hi."], **REQUIRED, steps=0)


def test_setting_rejects_unknown_bounds_and_checks_types():
    with pytest.raises(TypeError, match="unknown bounds"):
        setting(1, "x", minimum=0)
    from dataclasses import dataclass

    @dataclass
    class Example:
        n: int = setting(1, "a count", ge=1)
        x: float | None = setting(None, "a number", gt=0)

    check_fields(Example(2, 0.5))
    for bad in (Example("2"), Example(1, float("nan")), Example(0)):
        with pytest.raises(OracleInputError):
            check_fields(bad)
    assert [f.name for f in fields(Example)] == ["n", "x"]
