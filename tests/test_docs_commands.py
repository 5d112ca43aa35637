"""The documents say what runs: every `auditkit ...` command in README.md and docs/*.md parses
against the real CLI (its options exist, required arguments are there, choices are valid), every
flag the documents or the package's messages suggest exists, the card examples of docs/card.md
validate against the published JSON Schema, and the README's card commands run as written."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import typer

from auditkit.card import AuditCard, TASKS, card_schema
from auditkit.cli import app
from tests.conftest import REPO, run_cli

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
ROOT = typer.main.get_command(app)
# typer vendors its own click: its exception base class, as auditkit.cli finds it.
CLICK_EXCEPTION = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
FENCE = re.compile(r"```(\w*)\n(.*?)```", re.S)


def _commands(path: Path) -> list[tuple[str, list[str]]]:
    """``(line, argv after 'auditkit')`` of every auditkit command in the file's code blocks."""
    found = []
    for lang, body in FENCE.findall(path.read_text()):
        if lang not in ("bash", "sh", "yaml", "console", ""):
            continue
        text = body.replace("\\\n", " ")
        for line in text.splitlines():
            if line.strip().startswith("#"):
                continue
            m = re.search(r"(?:^|\s|/)auditkit(?:\.cli)?\s+(.*)$", line)
            if not m or "pip install" in line:
                continue
            if "-m auditkit.cli" not in line and not re.search(r"(^|\s|/)auditkit\s", line):
                continue
            args = shlex.split(m.group(1), comments=True)
            for i, a in enumerate(args):  # the command ends at a redirection or a pipe
                if a in (">", ">>", "|", "&&", ";"):
                    args = args[:i]
                    break
            args = [a for a in args if "$" not in a]  # shell variables of the CI workflow
            found.append((line.strip(), args))
    return found


ALL = [(path.name, line, args) for path in DOCS for line, args in _commands(path)]


def test_the_documents_hold_commands() -> None:
    names = {name for name, _, _ in ALL}
    assert {"README.md", "card.md", "github-actions.md"} <= names
    assert len(ALL) >= 20


@pytest.mark.parametrize("doc, line, args", ALL, ids=[f"{d}: {line[:60]}" for d, line, _ in ALL])
def test_each_documented_command_parses_against_the_cli(doc: str, line: str, args: list[str]) -> None:
    command = ROOT
    path = ["auditkit"]
    rest = list(args)
    while hasattr(command, "commands"):  # a group: the next word names a subcommand
        assert rest, f"{doc}: `{line}` names no subcommand"
        sub = command.commands.get(rest[0])
        assert sub is not None, f"{doc}: `{line}`: no command {rest[0]!r} under {' '.join(path)}"
        path.append(rest.pop(0))
        command = sub
    try:
        command.make_context(" ".join(path), rest)  # parses options and arguments; runs nothing
    except CLICK_EXCEPTION as exc:
        pytest.fail(f"{doc}: `{line}` does not parse: {exc.format_message()}")


def _options() -> set[str]:
    names: set[str] = set()

    def walk(cmd: object) -> None:
        for p in getattr(cmd, "params", []):
            names.update(o for o in [*p.opts, *p.secondary_opts] if o.startswith("--"))
        for sub in getattr(cmd, "commands", {}).values():
            walk(sub)

    walk(ROOT)
    return names


# Flags of other programs the documents mention.
FOREIGN = {"--nproc_per_node", "--upgrade",
           # torchrun's (docs/distributed.md)
           "--standalone", "--nnodes", "--node-rank", "--master-addr", "--master-port", "--rdzv-backend",
           "--rdzv-endpoint", "--rdzv-id"}


def test_every_flag_the_documents_name_exists() -> None:
    options = _options()
    for path in DOCS:
        for flag in set(re.findall(r"(?<![\w-])--[a-z][a-z0-9_-]*[a-z0-9]", path.read_text())):
            assert flag in options or flag in FOREIGN, f"{path.name} names {flag}, which no auditkit command has"


# Flags in auditkit's code that belong to other programs: click's --help, Streamlit's
# --server.*/--browser.*/--client.* settings, torchrun's --nproc_per_node.
FOREIGN_IN_CODE = {"--help", "--server", "--browser", "--client", "--nproc"}


def test_every_flag_a_message_suggests_exists() -> None:
    """Error messages (and docstrings) across the package name only flags that exist."""
    options = _options()
    for path in sorted((REPO / "auditkit").rglob("*.py")):
        for flag in set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]", path.read_text())):
            assert flag in options or flag in FOREIGN_IN_CODE, \
                f"{path.relative_to(REPO)} suggests {flag}, which no auditkit command has"


def test_card_examples_validate_against_the_published_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = card_schema()
    examples = [json.loads(body) for lang, body in FENCE.findall((REPO / "docs" / "card.md").read_text())
                if lang == "json"]
    assert sorted(e["task"] for e in examples) == sorted(TASKS)  # one complete card per task
    for example in examples:
        jsonschema.validate(example, schema)
        AuditCard.from_dict(example, source=f"docs/card.md {example['task']} example")
    documented = (REPO / "docs" / "card.md").read_text()
    for field in AuditCard.model_fields:  # every field is documented
        assert f"| `{field}` |" in documented, field


def test_readme_card_commands_run_as_written(tmp_path: Path) -> None:
    """`card init` and `card check` exactly as the README writes them, on a model.pt and test.npz
    made here; then `card schema`."""
    import warnings

    import numpy as np
    import torch

    from tests.byom_models import SmallResNet

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "test.npz", x=rng.random((60, 1, 8, 8), dtype=np.float32), y=np.arange(60) % 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(SmallResNet().eval()).save(str(tmp_path / "model.pt"))
    readme = [args for name, _, args in ALL if name == "README.md" and args[:1] == ["card"]]
    assert [a[1] for a in readme] == ["init", "check", "schema"]
    for args in readme:
        proc = run_cli(*args, cwd=tmp_path)
        assert proc.returncode == 0, (args, proc.stderr)
    assert AuditCard.read(tmp_path / "model.card.json").task == "image-classification"
