"""``python -m auditkit.zoo [POLICY]``: the zoo's model names for scripts (the Makefile uses it).

    python -m auditkit.zoo                 # every zoo model, each after the models it depends on
    python -m auditkit.zoo auditkit.toml   # only those the policy file gates ([gate.models."NAME"])
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or (args and args[0].startswith("-")):
        print(__doc__, file=sys.stderr)
        return 2
    from auditkit.zoo import training_order

    names = training_order()
    if args:
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10 (pyproject.toml declares tomli there)
            import tomli as tomllib  # type: ignore[no-redef]

        with open(args[0], "rb") as f:
            gated = (tomllib.load(f).get("gate") or {}).get("models") or {}
        names = [n for n in names if n in gated]
    print(" ".join(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
