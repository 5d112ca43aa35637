"""``python -m auditkit.zoo``: the zoo's model names for scripts (the Makefile iterates these).

    python -m auditkit.zoo                          # every model, dependencies first
    python -m auditkit.zoo --gated auditkit.toml    # those the policy file gates ([gate.models."NAME"])
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m auditkit.zoo", description=__doc__.splitlines()[0])
    parser.add_argument("--gated", metavar="POLICY", help="only the models that this policy file gates")
    args = parser.parse_args(argv)
    from auditkit.zoo import training_order

    names = training_order()
    if args.gated:
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10 (pyproject.toml declares tomli there)
            import tomli as tomllib  # type: ignore[no-redef]

        with open(args.gated, "rb") as f:
            gated = (tomllib.load(f).get("gate") or {}).get("models") or {}
        names = [n for n in names if n in gated]
    print(" ".join(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
