"""``python -m oracle_cli ARGS`` = ``oracle ARGS``."""

from oracle_cli import main

if __name__ == "__main__":
    main()
