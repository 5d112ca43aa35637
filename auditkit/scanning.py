"""Plan the checks for a model's task, run each, build the AuditResult (DESIGN.md §1, §5)."""

from __future__ import annotations

import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from auditkit import __version__
from auditkit.card import AuditCard
from auditkit.builtin_checks import all_checks
from auditkit.checks import Budget, Check, ScanConfig, ScanContext
from auditkit.data import AuditData, load_data
from auditkit.distributed import init_from_env, rank_and_world
from auditkit.errors import BadInputError, DataError, ModelLoadError, ScanInputError, one_line
from auditkit.inference import print_card, resolve
from auditkit.loading import AuditModel, load_model
from auditkit.progress import ScanProgress
from auditkit.results import AuditResult, Finding, Provenance, Section, to_jsonable
from auditkit.verdict import decide

SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}



def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except Exception:
        return None


def validate(model: AuditModel, data: AuditData) -> None:
    """Refuse data that does not fit the model, and a model whose outputs are unusable.

    Raises :class:`DataError`/:class:`ScanInputError` (bad input, exit 2) or
    :class:`ModelLoadError` (the model itself is broken, exit 3).
    """
    card = model.card
    if len(data.x_test) == 0:
        raise DataError(f"data {data.name!r} has no test samples; pass a non-empty dataset")
    if list(data.input_shape) != list(card.input_shape):
        raise ScanInputError(
            f"data samples have shape {data.input_shape} but the model's card expects "
            f"{card.input_shape}; pass data of the model's input shape (or fix input_shape in the card)"
        )
    for split, x in (("test", data.x_test), ("train", data.x_train)):
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            bad = int((~np.isfinite(x)).reshape(len(x), -1).any(1).sum())
            raise DataError(f"{bad} {split} samples contain NaN or infinite values; clean or drop them")
    if card.task == "gan":
        return
    k = card.num_classes
    for split, y in (("test", data.y_test), ("train", data.y_train)):
        if len(y) and (y.min() < 0 or y.max() >= k):
            raise DataError(
                f"{split} labels range over {int(y.min())}..{int(y.max())} but the card names {k} "
                f"classes (0..{k - 1}); fix the labels or the card's class_names"
            )
    if card.text is not None:
        v = len(card.text.vocab)
        if data.x_test.min() < 0 or data.x_test.max() >= v:
            raise DataError(
                f"token ids range over {int(data.x_test.min())}..{int(data.x_test.max())} but the "
                f"vocabulary has {v} tokens; encode the text with the model's vocabulary"
            )
    try:  # the model's first forward pass: a broken model (e.g. a TorchScript forward that raises) stops here
        probe = model.logits(data.x_test[:8])
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001  (whatever the model's own code raises)
        text = str(exc).strip()
        # TorchScript errors start with a multi-line traceback of the scripted code: keep its last line.
        line = text.splitlines()[-1].strip().removeprefix("builtins.") if text else ""
        what = line if type(exc).__name__ == "Error" else f"{type(exc).__name__}: {line}"  # torch.jit.Error
        raise ModelLoadError(
            f"the model {model.path.name} ({model.format}) fails on the first test samples: "
            f"{what[:300]}; check that it runs on inputs of shape "
            f"[N, {', '.join(map(str, card.input_shape))}] ({card.input_dtype})"
        ) from None
    if probe.ndim != 2 or probe.shape[1] != k:
        raise ScanInputError(
            f"the model outputs {list(probe.shape[1:])} values per sample but the card names {k} "
            f"classes; fix class_names in the card or pass the matching model"
        )
    if not np.isfinite(probe).all():
        raise ModelLoadError(
            "the model returns NaN or infinite logits on the first test samples; "
            "check its weights (and that it was saved after training)"
        )


def _run_check(check: Check, ctx: ScanContext) -> Section:
    """Run one check; an error inside it fails that section only (never the scan), with a
    high finding, so that the verdict is "incomplete" rather than a silent pass."""
    name = check.name
    if ctx.model.card.task not in check.tasks:
        return Section(name=name, status="not-applicable", reason=f"does not apply to task {ctx.model.card.task}")
    reason = check.skip_reason(ctx)
    if reason:
        return Section(name=name, status="skipped", reason=reason)
    torch.manual_seed(ctx.config.seed)
    ctx.incomplete = []
    try:
        data_out, check_findings = check.run(ctx)
        data_out = checked_payload(name, data_out)
    except (BadInputError, ModelLoadError):
        raise  # the user's input is at fault: exit 2 or 3 with its message
    except Exception as exc:  # noqa: BLE001  (recorded, never swallowed: the verdict says incomplete)
        message = one_line(f"{type(exc).__name__}: {exc}", 500)
        finding = Finding(severity="high", title=f"The {name} check could not run", evidence=message,
                          section=name, subject="evaluation", evidence_path=f"sections.{name}.reason",
                          why="Its figures are missing, so the audit cannot vouch for what it measures.",
                          action="Re-run with --debug --only " + name + " to see the traceback, and report it "
                                 "if the model and data are valid.")
        return Section(name=name, status="failed", reason=message, findings=[finding])
    return Section(name=name, data=data_out, findings=check_findings, incomplete=list(ctx.incomplete))


def checked_payload(name: str, data: Any) -> dict[str, Any]:
    """What check ``name`` returned (its typed model or a dict), as the JSON stored in its
    section, validated against the check's model (:mod:`auditkit.sections`) at this boundary:
    a check that writes the wrong shape fails its own section, naming the field. Data of a
    check without a model (a plugin) is stored as it is."""
    from pydantic import BaseModel

    from auditkit.sections import dump_payload, validate_payload

    raw = to_jsonable(dump_payload(data) if isinstance(data, BaseModel) else data)
    validate_payload(name, raw)
    return raw


def _choose_eval_index(data: AuditData, n: int, seed: int) -> np.ndarray:
    n_test = len(data.y_test)
    if n >= n_test:
        return np.arange(n_test)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_test, size=n, replace=False))


def plan(model: AuditModel | None, config: ScanConfig) -> list[str]:
    """Names of the checks this scan runs, after --only/--skip."""
    names = list(all_checks())
    unknown = [c for c in (config.only or []) + (config.skip or []) if c not in names]
    if unknown:
        raise ScanInputError(f"unknown check(s) {', '.join(unknown)}; known: {', '.join(names)}")
    if config.only:
        names = [n for n in names if n in config.only]
    if config.skip:
        names = [n for n in names if n not in config.skip]
    return names


def scan(
    model: Any,
    data: Any = None,
    *,
    card: AuditCard | str | Path | None = None,
    arch: str | None = None,
    trust_pickle: bool = False,
    out: str | Path | None = None,
    samples: int = 256,
    seed: int = 0,
    device: str = "auto",
    budget: Budget = "standard",
    only: Iterable[str] | None = None,
    skip: Iterable[str] | None = None,
    epsilons: dict[str, list[float]] | None = None,
    defenses: Iterable[str] | None = None,
    threads: int | None = None,
    progress: bool = True,
    overrides: dict[str, Any] | None = None,
) -> AuditResult:
    """Audit ``model`` on ``data`` and return the :class:`AuditResult`.

    ``model`` is a path (any accepted format), an :class:`AuditModel` or an ``nn.Module``;
    ``data`` a data spec (defaults to the card's ``dataset``), an :class:`AuditData`, arrays
    ``(x, y)`` (NumPy or torch), a ``Dataset``/``DataLoader`` or ``(DataFrame, "target")``
    (:mod:`auditkit.data.objects`). Without a card (given, embedded or beside the file) the
    card is inferred from the model and the data (:mod:`auditkit.inference`); ``overrides``
    sets card fields (what the CLI's --task, --bounds, --eps... flags do). With ``out``, the
    card used is written to ``out/card.json`` and the result atomically to ``out/results.json``.

    Launched by ``torchrun`` (``WORLD_SIZE`` > 1), the scan joins the process group and shards
    the checks' per-sample work over the ranks (docs/distributed.md); every rank returns the
    same result, equal to a single-process run's (timings and ``provenance.world_size`` aside),
    and only rank 0 writes ``out`` and shows progress.
    """
    started = time.perf_counter()
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if budget not in ("quick", "standard", "thorough"):
        raise ScanInputError(f"budget {budget!r} is not one of quick, standard, thorough")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ScanInputError(f"--samples must be a whole number of at least 1, got {samples!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ScanInputError(f"--seed must be a whole number in [0, 2**32), got {seed!r}")
    if defenses:
        from auditkit.defenses.check import check_defense_names

        defenses = check_defense_names(list(defenses))
    config = ScanConfig(samples=samples, seed=seed, budget=budget, device=device,
                        only=list(only) if only else None, skip=list(skip) if skip else None,
                        epsilons=epsilons, defenses=list(defenses) if defenses else None, threads=threads)
    if threads is not None:
        if threads < 1:
            raise ScanInputError("--threads must be at least 1")
        # Small models run as fast on one thread; more threads on a busy machine oversubscribe.
        torch.set_num_threads(threads)
    else:
        from auditkit.resources import default_threads

        # torch's default is the host's physical cores, which in a container limited to a few
        # CPUs means many threads fighting over them: use the CPUs this process may run on.
        torch.set_num_threads(default_threads())
    torch.manual_seed(seed)
    names = plan(None, config)  # --only/--skip typos are refused before the model loads
    # Under torchrun: join the process group (gloo on CPU, NCCL with one GPU per rank). Every rank
    # runs the whole scan; the per-sample work of the checks is sharded in units
    # (auditkit.distributed.map_units) and gathered, so every rank builds the same result. Only
    # rank 0 prints and writes.
    device = init_from_env(device)
    rank, world_size = rank_and_world()
    if rank != 0:
        progress, out = False, None
    # Model, data and card (given, overridden by flags, or inferred): one place for CLI and API.
    resolved = resolve(model, data, card=card, arch=arch, trust_pickle=trust_pickle, device=device,
                       overrides=overrides)
    audit_model, audit_data, data_spec = resolved.model, resolved.data, resolved.data_spec
    if progress and (resolved.resolution.inferred or overrides):
        print_card(resolved.resolution, Path(out) / "card.json" if out is not None else None)
    validate(audit_model, audit_data)

    reporter = ScanProgress(progress)
    ctx = ScanContext(model=audit_model, data=audit_data, config=config,
                      eval_index=_choose_eval_index(audit_data, samples, seed), track=reporter.track)
    checks = all_checks()
    timings: dict[str, float] = {}
    findings: list[Finding] = []
    for i, name in enumerate(names, 1):
        check = checks[name]()
        t0 = time.perf_counter()
        section = _run_check(check, ctx)
        findings.extend(section.findings)
        section.seconds = round(time.perf_counter() - t0, 3)
        timings[name] = section.seconds
        ctx.sections[name] = section
        status = "incomplete" if section.incomplete else section.status
        reporter.check_done(i, len(names), name, status, section.seconds, section.reason)
    findings.extend(core_check_findings(ctx.sections, audit_model.card.task))
    findings.sort(key=lambda f: (SEVERITY_ORDER[f.severity], f.subject != "model"))
    prov = Provenance(
        auditkit=__version__, torch=torch.__version__, captum=_version("captum"), foolbox=_version("foolbox"),
        python=platform.python_version(), platform=platform.platform(terse=True),
        model_path=str(audit_model.path), model_sha256=audit_model.sha256, model_format=audit_model.format,
        data_spec=str(data_spec), data_sha256=audit_data.sha256(), card=audit_model.card.model_dump(mode="json"),
        card_source=audit_model.card_source, card_fields=resolved.resolution.sources,
        card_notes=resolved.resolution.notes,
        config=config.as_dict(), seed=seed, device=str(audit_model.device), started_at=started_at,
        wall_seconds=round(time.perf_counter() - started, 3), timings=timings, world_size=world_size,
    )
    verdict = decide(ctx.sections, findings, audit_model.card.task)
    result = AuditResult(verdict=verdict, provenance=prov, sections=ctx.sections, findings=findings)
    # Round-trip through JSON types so the in-memory result equals what a reader gets back.
    result = AuditResult.model_validate_json(result.to_json())
    if out is not None:
        audit_model.card.write(Path(out) / "card.json")  # passed back with --card, it reproduces the run
        result.write(Path(out) / "results.json")
    return result


def core_check_findings(sections: dict[str, Section], task: str) -> list[Finding]:
    """A high finding for each core check of ``task`` that was skipped or ran without result
    (never a silent pass); such a section is also marked incomplete, so the verdict says so.
    A check that failed already carries its own finding; one left out by --only/--skip was the
    user's choice and is only named in the verdict."""
    from auditkit.verdict import core_checks

    out = []
    for name in core_checks(task):
        section = sections.get(name)
        if section is None or section.status == "failed":
            continue
        reason = section.reason if section.status == "skipped" else section.data.get("skipped") \
            if isinstance(section.data.get("skipped"), str) else None
        if not reason:
            continue
        if section.status == "ok" and reason not in section.incomplete:
            section.incomplete.append(reason)
        finding = Finding(
            severity="high", title=f"The {name} check did not run", evidence=reason, section=name,
            subject="evaluation", evidence_path=f"sections.{name}.reason" if section.status == "skipped"
            else f"sections.{name}.data.skipped",
            why=f"{name} is a core check: without it the audit says nothing about "
                + {"performance": "how accurate the model is", "attributions": "what the model looks at",
                   "robustness": "how the model fares under attack", "gan": "what the generator produces"}.get(
                    name, "this part of the model") + ", so it cannot pass.",
            action=_core_action(name, reason))
        section.findings.append(finding)
        out.append(finding)
    return out


def _core_action(name: str, reason: str) -> str:
    if "bounds" in reason:
        return "Give the valid input range: --bounds LO,HI (e.g. --bounds 0,1), or 'bounds' in the card."
    if "positive class" in reason:
        return "Name the class an attacker wants to escape: --positive-class NAME, or 'positive_class' in the card."
    if "eager" in reason or "hooks" in reason:
        return "Scan an eager model: a state_dict with --arch package.module:Class, or the module from Python."
    if "epsilon" in reason:
        return "Give attack budgets: --eps linf=A,B l2=C, or 'epsilons' in the card."
    return f"Fix what the reason says, then re-run (auditkit scan ... --only {name} runs this check alone)."
