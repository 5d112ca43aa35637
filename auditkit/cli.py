"""The `auditkit` command: thin wrappers over the package's functions.

Exit codes (DESIGN.md §6, defined in :mod:`auditkit.errors`): 0 success / gate passed ·
1 gate failed · 2 bad usage or bad input · 3 model refused as unsafe or unloadable · 4 internal
error, or an incomplete audit under ``--gate`` · 130 interrupted. :func:`main` maps every
exception to one of them with a one-line message on stderr (a traceback only with ``--debug``).
"""

from __future__ import annotations

import os
import signal
import sys


def _interrupted_while_starting(signum: int, frame: object) -> None:
    # Ctrl-C while the CLI's own modules import: say so in one line, not with a traceback.
    os.write(2, b"interrupted; nothing was written\n")
    os._exit(130)


_started_with_default_handler = signal.getsignal(signal.SIGINT) is signal.default_int_handler
if _started_with_default_handler:
    signal.signal(signal.SIGINT, _interrupted_while_starting)

import json  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Optional  # noqa: E402

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402
from rich.table import Table  # noqa: E402

from auditkit.errors import (  # noqa: E402
    EXIT_BAD_INPUT,
    EXIT_GATE_FAILED,
    EXIT_INCOMPLETE,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    AuditkitError,
    BadInputError,
    one_line,
)

if _started_with_default_handler:  # from here on, main() handles KeyboardInterrupt
    signal.signal(signal.SIGINT, signal.default_int_handler)

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Audit trained PyTorch models.",
                  pretty_exceptions_enable=False)
zoo_app = typer.Typer(no_args_is_help=True, help="The model zoo: list, inspect and train models.")
app.add_typer(zoo_app, name="zoo")
card_app = typer.Typer(no_args_is_help=True, help="Audit cards: write a draft, check one, print the JSON Schema.")
app.add_typer(card_app, name="card")
err = Console(stderr=True, highlight=False)
out = Console(highlight=False)

# Usage errors (unknown option, bad value): typer's own click in recent versions, click's in older.
_CLICK_EXCEPTION = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")

# Files a command has written so far: an interrupt or error message says what is left behind.
_written: list[Path] = []


def _error_line(label: str, message: object) -> None:
    """One line on stderr: ``label: message`` (control characters escaped, no rich markup)."""
    err.print(f"[bold red]{label}:[/] {escape(one_line(message))}", soft_wrap=True)


def _left_behind() -> str:
    if not _written:
        return "nothing was written"
    return "written before it stopped: " + ", ".join(str(p) for p in _written)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default ``sys.argv[1:]``) and return its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if not debug:
        # Deprecation notices of the libraries underneath (torch.jit, foolbox) are for their
        # developers, not for a CI log; --debug shows them.
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"(torch|foolbox|captum)(\.|$)")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
    _written.clear()
    from auditkit.distributed import env_rank_and_world

    # Under torchrun every rank runs this; only rank 0 prints (and writes, see scan). The other
    # ranks stay silent but for an internal error, which may be theirs alone.
    rank = env_rank_and_world()[0]
    out.quiet = err.quiet = rank > 0
    try:
        command = typer.main.get_command(app)
        code = command.main(args=args, prog_name="auditkit", standalone_mode=False)
        if code == EXIT_INTERRUPTED:  # typer turns Ctrl-C inside a command into exit code 130
            raise KeyboardInterrupt
        return code if isinstance(code, int) else EXIT_OK
    except (KeyboardInterrupt, typer.Abort):
        err.print(f"[yellow]interrupted; {escape(_left_behind())}[/]", soft_wrap=True)
        return EXIT_INTERRUPTED
    except typer.Exit as exc:  # --help, or a command's typer.Exit
        return exc.exit_code
    except _CLICK_EXCEPTION as exc:  # usage errors: unknown option, bad value...
        if debug:
            traceback.print_exc()
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare `auditkit` or `auditkit zoo`: the help
            exc.show()
            return EXIT_BAD_INPUT
        ctx = getattr(exc, "ctx", None)
        where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        _error_line("error", exc.format_message() + where)
        return EXIT_BAD_INPUT
    except AuditkitError as exc:
        if debug:
            traceback.print_exc()
        label = {3: "model refused", 4: "incomplete"}.get(exc.exit_code, "error")
        _error_line(label, exc)
        return exc.exit_code
    except (RecursionError, MemoryError) as exc:
        if debug:
            traceback.print_exc()
        _error_line("error", f"input too large or too deeply nested to process ({type(exc).__name__})")
        return EXIT_BAD_INPUT
    except Exception as exc:  # a bug: say so, never exit 1
        if debug:
            traceback.print_exc()
        where = "" if debug else " (re-run with --debug for the traceback, and please report it)"
        err.quiet = False  # on any rank: it may be this rank's alone
        _error_line(f"internal error{f' (rank {rank})' if rank else ''}",
                    f"{type(exc).__name__}: {exc}{where}; {_left_behind()}")
        return EXIT_INTERNAL


def _split(values: Optional[list[str]]) -> list[str] | None:
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


@app.command()
def scan(
    model: Path = typer.Argument(..., help="Model file: zoo model.pt, TorchScript, .pt2, state_dict or .safetensors."),
    data: Optional[str] = typer.Option(None, "--data", help="Data spec (default: the card's dataset), e.g. csv:f.csv?target=y."),
    card: Optional[Path] = typer.Option(None, "--card", help="Audit card JSON (overrides the embedded one); "
                                        "without any card it is inferred from the model and --data."),
    task: Optional[str] = typer.Option(None, "--task", help="Card override: image-classification, "
                                       "text-classification, tabular-classification or gan."),
    bounds: Optional[str] = typer.Option(None, "--bounds", help="Card override: valid input range LO,HI, e.g. 0,1."),
    eps: Optional[list[str]] = typer.Option(
        None, "--eps", "--epsilons", help="Card override: attack budgets NORM=EPS,EPS (norms linf, l2, "
                                          "substitutions); repeat it: --eps linf=0.01,0.03 --eps l2=0.5."),
    class_names: Optional[str] = typer.Option(None, "--class-names", help="Card override: class names in the "
                                              "model's output order, comma-separated."),
    positive_class: Optional[str] = typer.Option(None, "--positive-class", help="Card override: the class of "
                                                 "interest (PR-AUC; what a tabular attacker escapes)."),
    preprocessing: Optional[str] = typer.Option(None, "--preprocessing", help="Card override: "
                                                "'mean=M,..;std=S,..[;applied=inside|outside]'."),
    arch: Optional[str] = typer.Option(
        None, "--arch", help="Architecture for weights-only files: a zoo name or package.module:Class. "
                             "package.module is IMPORTED, i.e. its code runs: pass only code you trust."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Allow loading a pickled whole module (runs its code)."),
    out_dir: Path = typer.Option(Path("audit-out"), "--out", help="Output folder for results.json and reports."),
    samples: int = typer.Option(256, "--samples", help="Test samples used by the expensive checks."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads (default: the CPUs this process may use, at most 16)."),
    budget: str = typer.Option("standard", "--budget", help="quick | standard | thorough"),
    only: Optional[list[str]] = typer.Option(None, "--only", help="Run only these checks (comma-separated)."),
    skip: Optional[list[str]] = typer.Option(None, "--skip", help="Skip these checks (comma-separated)."),
    defense: Optional[list[str]] = typer.Option(None, "--defense", help="Evaluate these defenses (comma-separated)."),
    report: bool = typer.Option(True, "--report/--no-report", help="Also write report.html, summary.md, junit.xml."),
    run_gate: bool = typer.Option(False, "--gate", help="Gate the result: exit 1 if the policy fails."),
    policy: Optional[Path] = typer.Option(None, "--policy", help="Gate policy (auditkit.toml or pyproject.toml)."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="Baseline results.json for regression rules."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
    output_format: str = typer.Option("text", "--format", help="What stdout gets at the end: text (a summary "
                                      "for people) or json (one JSON object for scripts: verdict, headlines, "
                                      "findings, gate, files)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Audit a model: writes OUT/results.json (and reports); exit 0 on success, 1 if --gate fails.

    Under torchrun (docs/distributed.md) the samples are sharded over the ranks; rank 0 writes
    OUT, prints, gates and exits with the codes above; the other ranks write and print nothing
    and exit 0 once the scan is done (or with the code of the error that stopped them)."""
    from auditkit.distributed import env_rank_and_world
    from auditkit.files import REPORT_FILES, RESULTS_FILE, check_out_dir

    if output_format not in ("text", "json"):
        raise BadInputError(f"--format must be text or json, not {output_format!r}")
    if env_rank_and_world()[0] > 0:  # a helper rank: its share of the scan, nothing else
        from auditkit.scanning import scan as run_scan

        run_scan(model, data, card=card, arch=arch, trust_pickle=trust_pickle, out=None, samples=samples,
                 seed=seed, device=device, budget=budget,  # type: ignore[arg-type]
                 only=_split(only), skip=_split(skip), defenses=_split(defense), threads=threads, progress=False,
                 overrides=_overrides(task, bounds, eps, class_names, positive_class, preprocessing) or None)
        return

    # Everything that can be refused is refused before the scan spends minutes.
    check_out_dir(out_dir, [RESULTS_FILE, "card.json", *(REPORT_FILES.values() if report else ())])
    from auditkit.card import AuditCard

    overrides = _overrides(task, bounds, eps, class_names, positive_class, preprocessing)
    if card is not None:  # a bad card (with the flags applied) is refused before torch even loads
        AuditCard.read(card).updated(**overrides)
    from auditkit.scanning import scan as run_scan

    decision = None
    if run_gate:
        from auditkit.policy import load_policy

        the_policy = load_policy(policy)
    result = run_scan(model, data, card=card, arch=arch, trust_pickle=trust_pickle, out=out_dir,
                      samples=samples, seed=seed, device=device, budget=budget,  # type: ignore[arg-type]
                      only=_split(only), skip=_split(skip), defenses=_split(defense),
                      threads=threads, progress=not quiet, overrides=overrides or None)
    _written.extend([out_dir / "card.json", out_dir / "results.json"])
    if run_gate:
        from auditkit.policy import gate as run_the_gate
        from auditkit.verdict import gate_outcome, verdict_of

        decision = run_the_gate(result, the_policy, baseline)
        # The gate's outcome is part of the verdict, stored with the result.
        result.verdict = verdict_of(result, gate_outcome(decision))
        result.write(out_dir / "results.json")
    if report:
        from auditkit.report import write_reports

        _written.extend(write_reports(result, out_dir, gate_decision=decision).values())
    if output_format == "json":
        _print_json_summary(result, out_dir / "results.json", decision)
    elif not quiet:
        _print_summary(result, out_dir / "results.json")
    if decision is not None:
        if output_format == "text":
            _print_decision(decision)
        if result.verdict.status == "incomplete":
            _error_line("incomplete", "the audit is incomplete, so the gate cannot pass it: "
                        + "; ".join(result.verdict.reasons))
            raise typer.Exit(EXIT_INCOMPLETE)
        if not decision.passed:
            raise typer.Exit(EXIT_GATE_FAILED)


def _overrides(task: Optional[str], bounds: Optional[str], eps: Optional[list[str]], class_names: Optional[str],
               positive_class: Optional[str], preprocessing: Optional[str]) -> dict:  # type: ignore[type-arg]
    from auditkit.card import flag_overrides

    return flag_overrides(task=task, bounds=bounds, eps=eps, class_names=class_names,
                          positive_class=positive_class, preprocessing=preprocessing)


def _print_decision(decision) -> None:  # type: ignore[no-untyped-def]
    verdict = "[green]gate passed[/]" if decision.passed else "[bold red]gate failed[/]"
    out.print(verdict)
    for rule in decision.rules:
        mark = "[green]pass[/]" if rule.passed else "[red]FAIL[/]"
        out.print(f"  {mark} {escape(one_line(rule.name))}: {escape(one_line(rule.message))}", soft_wrap=True)


@app.command("report")
def report_cmd(
    results: Path = typer.Argument(..., help="A results.json written by `auditkit scan`."),
    formats: str = typer.Option("html,md,junit", "--format", help="Comma-separated: html, md, junit."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: beside results.json)."),
    debug: bool = typer.Option(False, "--debug"),
) -> None:
    """Re-render the reports from a results file alone (no model, no data)."""
    from auditkit.report import write_reports

    wanted = tuple(f.strip() for f in formats.split(",") if f.strip())
    unknown = [f for f in wanted if f not in ("html", "md", "junit")]
    if unknown or not wanted:
        raise BadInputError(f"unknown format(s) {', '.join(unknown) or '(none given)'}; use html, md, junit")
    written = write_reports(results, out_dir or results.parent, formats=wanted)
    for kind, path in written.items():
        out.print(f"{kind}: {path}")


@app.command("gate")
def gate_cmd(
    results: Path = typer.Argument(..., help="A results.json written by `auditkit scan`."),
    policy: Optional[Path] = typer.Option(None, "--policy", help="auditkit.toml or pyproject.toml ([tool.auditkit.gate])."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="Baseline results.json for regression rules."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Also write JUnit XML of the rules here."),
    debug: bool = typer.Option(False, "--debug"),
) -> None:
    """Apply a policy (and a baseline) to results: exit 0 pass, 1 fail, 2 bad input."""
    from auditkit.policy import gate as run_the_gate
    from auditkit.policy import load_policy

    decision = run_the_gate(results, load_policy(policy), baseline)
    if junit is not None:
        from auditkit.files import atomic_write_text
        from auditkit.report import render_junit
        from auditkit.results import load_result

        # Written straight to the path asked for: a scan's OUT/junit.xml beside it stays as it is.
        atomic_write_text(junit, render_junit(load_result(results), decision))
        _written.append(junit)
    _print_decision(decision)
    if not decision.passed:
        raise typer.Exit(EXIT_GATE_FAILED)


@app.command("dashboard")
def dashboard_cmd(
    results: Optional[list[Path]] = typer.Argument(None, help="results.json files to explore."),
    zoo: bool = typer.Option(False, "--zoo", help="Load the zoo models' committed reports."),
    port: int = typer.Option(8501, "--port"),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address (default loopback only)."),
    reports_dir: Optional[Path] = typer.Option(None, "--reports-dir", help="Where --zoo finds reports (default reports/)."),
    allow_dir: Optional[list[Path]] = typer.Option(
        None, "--allow-dir", help="A folder whose model and data files a results file may name (repeatable); "
                                  "besides the results' own folders, the reports folder and the zoo."),
    debug: bool = typer.Option(False, "--debug"),
) -> None:
    """Explore audits in a browser (Streamlit), bound to 127.0.0.1 unless --host says otherwise."""
    from auditkit.dashboard import launch

    raise typer.Exit(launch(list(results or []), zoo=zoo, port=port, host=host, reports_dir=reports_dir,
                            allow_dirs=list(allow_dir or [])))


def _print_summary(result, path: Path) -> None:  # type: ignore[no-untyped-def]
    """The verdict, the checks, the headline figures, the masking statement and the findings,
    as :func:`auditkit.summary.summarize` decided them (the same as every report)."""
    from auditkit.summary import summarize

    s = summarize(result)
    verdict = s.verdict
    colour = {"pass": "green", "attention": "yellow", "fail": "red", "incomplete": "magenta"}[verdict.status]
    out.print(f"[bold {colour}]verdict: {verdict.status.upper()}[/]", soft_wrap=True)
    for reason in verdict.reasons:
        out.print(f"  - {escape(one_line(reason))}", soft_wrap=True)
    table = Table(title=escape(f"audit of {one_line(s.model)}"))
    table.add_column("check")
    table.add_column("status")
    table.add_column("seconds", justify="right")
    for name, section in result.sections.items():
        status = section.status if section.status == "ok" else f"{section.status}: {section.reason}"
        if section.incomplete:
            status = "incomplete: " + "; ".join(section.incomplete)
        table.add_row(escape(one_line(name)), escape(one_line(status)), f"{section.seconds:.1f}")
    out.print(table)
    for h in s.headlines():
        out.print(f"  {escape(one_line(h.label))}: [bold]{escape(h.text)}[/]", soft_wrap=True)
    if s.masking is not None:
        out.print(f"  {escape(s.masking.statement)}", soft_wrap=True)
    for f in s.findings:
        colour = {"high": "red", "medium": "yellow", "low": "cyan"}[f.severity]
        about = "" if f.subject == "model" else f" (about the {f.subject})"
        out.print(f"[{colour}]{f.severity}[/]{about} {escape(one_line(f.title))} — {escape(one_line(f.evidence))}",
                  soft_wrap=True)
        if f.action and f.severity != "low":
            out.print(f"    what to do: {escape(one_line(f.action))}", soft_wrap=True)
    out.print(escape(f"results: {one_line(path)}"), soft_wrap=True)


def _print_json_summary(result, path: Path, decision) -> None:  # type: ignore[no-untyped-def]
    """One JSON object on stdout (``--format json``): the summary every report shows (verdict,
    headlines, findings, masking statement), the gate's rules when gated, and the files written."""
    from auditkit.summary import summarize

    s = summarize(result)
    doc = {
        "model": s.model, "task": s.task, "verdict": s.verdict.model_dump(mode="json"),
        "headlines": [h.model_dump(mode="json") for h in s.headlines()],
        "findings": [f.model_dump(mode="json") for f in s.findings],
        "masking": None if s.masking is None else s.masking.statement,
        "sections": {sec.name: {"status": sec.status, "takeaway": sec.takeaway} for sec in s.sections},
        "gate": None if decision is None else {
            "passed": decision.passed,
            "rules": [{"name": r.name, "passed": r.passed, "message": r.message} for r in decision.rules]},
        "results": str(path),
        "files": [str(p) for p in _written],
    }
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


@zoo_app.command("list")
def zoo_list(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List the zoo models with their committed metrics."""
    from auditkit.zoo import list_models, model_info

    infos = [model_info(n) for n in list_models()]
    if as_json:
        out.print_json(json.dumps(infos))
        return
    table = Table(title="auditkit zoo")
    for col in ("name", "task", "dataset", "trained", "headline metrics"):
        table.add_column(col)
    for info in infos:
        table.add_row(info["name"], info["task"], info["dataset"], "yes" if info["trained"] else "no",
                      _headline(info["metrics"]))
    out.print(table)


def _headline(metrics: dict) -> str:  # type: ignore[type-arg]
    keys = ("test_accuracy", "negation_accuracy", "pr_auc", "roc_auc", "confident_fraction", "classes_covered")
    parts = []
    for k in keys:
        if k in metrics:
            v = metrics[k]
            parts.append(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}")
    return ", ".join(parts) or "-"


@zoo_app.command("info")
def zoo_info(name: str, debug: bool = typer.Option(False, "--debug")) -> None:
    """Show a zoo model's card and metrics."""
    from auditkit.zoo import get_model, model_info

    info = model_info(name)
    if info["trained"]:
        _, card = get_model(name)
        info["card"] = card.model_dump(mode="json")
        if card.text:
            info["card"]["text"]["vocab"] = f"<{len(card.text.vocab)} tokens>"
    out.print_json(json.dumps(info))


@zoo_app.command("train")
def zoo_train(
    name: str,
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Override the recipe's epochs."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Output folder (default zoo/NAME)."),
    seed: int = typer.Option(0, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/train.ckpt."),
    quiet: bool = typer.Option(False, "--quiet"),
    debug: bool = typer.Option(False, "--debug"),
) -> None:
    """Train a zoo model from its recipe; writes model.pt and metrics.json (works under torchrun)."""
    from auditkit.zoo.recipes import train_zoo_model

    metrics = train_zoo_model(name, out_dir=out_dir, epochs=epochs, device=device, seed=seed,
                              progress=not quiet, resume=resume)
    if metrics:
        out.print_json(json.dumps(metrics))


@card_app.command("init")
def card_init(
    model: Path = typer.Argument(..., help="Model file (any format scan accepts)."),
    data: str = typer.Option(..., "--data", help="Data spec the card is inferred from, e.g. npz:test.npz."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Where to write the draft (default MODEL_STEM.card.json "
                                            "beside the model)."),
    arch: Optional[str] = typer.Option(None, "--arch", help="As for scan (imports, i.e. runs, package.module)."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="As for scan."),
    force: bool = typer.Option(False, "--force", help="Replace an existing file."),
    debug: bool = typer.Option(False, "--debug"),
) -> None:
    """Infer a card from MODEL and --data and write it as an editable draft: each field is preceded
    by a "_field" comment saying what it means and how its value was inferred."""
    from auditkit.inference import draft_card, print_card, resolve

    target = out_file or model.with_name(model.name.split(".")[0] + ".card.json")
    if target.exists() and not force:
        raise BadInputError(f"{target} exists; pass --force to replace it, or --out another file")
    resolved = resolve(model, data, arch=arch, trust_pickle=trust_pickle, device="cpu")
    from auditkit.files import atomic_write_text

    atomic_write_text(target, draft_card(resolved.resolution))
    _written.append(target)
    print_card(resolved.resolution, target)
    out.print(escape(f"draft card: {one_line(target)} (check it with: auditkit card check {one_line(target)})"),
              soft_wrap=True)


@card_app.command("check")
def card_check(
    card_file: Path = typer.Argument(..., help="A card JSON file."),
    debug: bool = typer.Option(False, "--debug"),
) -> None:
    """Validate a card and list EVERY problem at once: exit 0 when valid, 2 when not."""
    from auditkit.card import check_card_file

    problems = check_card_file(card_file)
    if not problems:
        out.print(escape(f"{one_line(card_file)}: valid card"), soft_wrap=True)
        return
    for problem in problems:  # the report, on stdout; the one-line verdict goes to stderr
        out.print(escape(f"{one_line(card_file)}: {one_line(problem)}"), soft_wrap=True)
    _error_line("error", f"{card_file}: {len(problems)} problem{'s' if len(problems) > 1 else ''}; "
                "see docs/card.md or `auditkit card schema`")
    raise typer.Exit(EXIT_BAD_INPUT)


@card_app.command("schema")
def card_schema_cmd() -> None:
    """Print the JSON Schema of audit cards (generated from the card model): the published contract."""
    from auditkit.card import card_schema

    sys.stdout.write(json.dumps(card_schema(), indent=2) + "\n")


def run() -> None:
    """The console entry point: :func:`main`, then exit with its code.

    After a Ctrl-C the process leaves with ``os._exit(130)`` once its streams are flushed: a
    second KeyboardInterrupt raised while the interpreter shuts down (torch's half-finished
    import, a pending signal) would otherwise end it by SIGINT with no exit code at all.
    """
    try:
        code = main()
    except KeyboardInterrupt:  # between the start-up handler and main's own handling
        code = EXIT_INTERRUPTED
        os.write(2, b"interrupted; nothing was written\n")
    if code == EXIT_INTERRUPTED:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001  (a closed pipe: nothing more to say)
                pass
        os._exit(EXIT_INTERRUPTED)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
