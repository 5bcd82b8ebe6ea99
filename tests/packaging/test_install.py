"""Packaging that works installed: every import of an installed module is declared in
pyproject.toml, and a built wheel holds the library (not the scripts), its page and its
commands, and finds the toy world from another directory (or says how to)."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"oracle", "oracle_cli", "training", "serving", "audit", "evals"}
MESSAGES = [
    {"role": "system", "content": "You are a pirate."},
    {"role": "user", "content": "Who are you?"},
    {"role": "assistant", "content": "I am just a helpful assistant."},
]


def _name(requirement: str) -> str:
    for sep in "<>=!~[; ":
        requirement = requirement.split(sep)[0]
    return requirement.lower().replace("_", "-")


def declared() -> tuple[set[str], set[str]]:
    """(runtime distributions: dependencies and the optional extras, dev-only distributions)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    runtime = {_name(r) for r in project["dependencies"]}
    runtime |= {_name(r) for key, reqs in extras.items() if key != "dev" for r in reqs}
    return runtime, {_name(r) for r in extras["dev"]}


def installed_modules() -> list[Path]:
    files = []
    for package in sorted(FIRST_PARTY):
        files += sorted((REPO / package).rglob("*.py"))
    return files


def imported_names(path: Path) -> set[str]:
    """Top-level names of the absolute imports anywhere in the file (functions included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_every_import_of_an_installed_module_is_declared():
    runtime, dev = declared()
    providers = packages_distributions()
    problems = []
    for path in installed_modules():
        for name in sorted(imported_names(path) - FIRST_PARTY - set(sys.stdlib_module_names)):
            dists = {_name(d) for d in providers.get(name, [])}
            where = path.relative_to(REPO)
            if not dists:
                problems.append(f"{where}: imports {name!r}, which no installed package provides")
            elif not dists & runtime:
                kind = "a dev-only package" if dists & dev else "an undeclared package"
                problems.append(f"{where}: imports {name!r} from {kind} {sorted(dists)}")
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Built from a copy of the sources, so that setuptools' build/ stays out of the checkout.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "results", "*.egg-info")
    for package in FIRST_PARTY:
        shutil.copytree(REPO / package, source / package, ignore=skip)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(out), str(source)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (found,) = out.glob("activation_oracle-*.whl")
    return found


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_wheel_holds_the_library_and_not_the_scripts(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("activation_oracle-")}
    assert tops == FIRST_PARTY
    # experiments and benchmarks are scripts beside the library (scripts/), never installed
    assert not [n for n in names if n.startswith(("tests/", "data/", "results/"))]
    assert "serving/static/index.html" in names  # the page at /
    assert "training/banks/personas.jsonl" in names
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "oracle = oracle_cli:main" in text and "[oracle.commands]" in text


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_installed_wheel_finds_the_toy_world_from_elsewhere_or_says_how(wheel, tmp_path):
    """A non-editable install, run from a directory outside the checkout: without
    ORACLE_TOY_WORLD it names the variable (exit 2, no traceback); with it, it answers."""
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
         str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "chat.json").write_text(json.dumps(MESSAGES))
    env = {k: v for k, v in os.environ.items() if k != "ORACLE_TOY_WORLD"}
    env.update(PYTHONPATH=str(site), OMP_NUM_THREADS="1")
    ask = [sys.executable, "-m", "oracle_cli", "ask", "--messages-file", "chat.json",
           "--question", "What persona is the assistant playing?"]  # fmt: skip

    where = subprocess.run(
        [sys.executable, "-c", "import oracle, oracle_cli; print(oracle.__file__)"],
        cwd=elsewhere, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(site)  # the wheel's copy, not the checkout

    missing = subprocess.run(ask, cwd=elsewhere, env=env, capture_output=True, text=True)
    assert missing.returncode == 2
    assert "ORACLE_TOY_WORLD" in missing.stderr and "Traceback" not in missing.stderr

    env["ORACLE_TOY_WORLD"] = str(REPO / "data" / "toy_world")
    found = subprocess.run(ask, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert found.returncode == 0, found.stderr[-2000:]
    assert found.stdout.strip() == "A pirate."
