"""The worlds that ship with the project, one package each (a target, its oracle's data and build,
its suites): they join the commands and the registry through entry points (pyproject.toml),
so that no other package names them."""
