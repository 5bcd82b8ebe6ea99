"""The offline defaults: what runs when no model is named.

That is the default world's (``oracle.worlds.default_world``: ``$ORACLE_DEFAULT_WORLD``, else
the toy world, a 5M-parameter target and its oracle that ship with the repository under
``data/toy_world``, not inside the installed package). This module names no world: the
registry finds the default world's folder through its entry point, and a world whose folder
is missing says how to get it.
"""

from __future__ import annotations

from pathlib import Path

from oracle.worlds import default_world, get_world

# The checkout's root (meaningful for a source tree or an editable install only): where the
# worlds that ship with the repository keep their data folders.
REPO_ROOT = Path(__file__).resolve().parent.parent


def default_oracle() -> Path:
    """The default world's oracle directory."""
    return get_world(default_world()).oracle_dir()


def default_target() -> str:
    """The default world's target model (a local directory, or a known model fetched once)."""
    return get_world(default_world()).target()
