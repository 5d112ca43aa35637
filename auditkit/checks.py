"""The check registry and what a check sees while it runs.

A check is a class with a stable ``name``, the ``tasks`` it applies to, and ``run(ctx)``
returning ``(data, findings)``. This registry is a leaf: it imports no check module; the list
of built-in checks lives above it, in :mod:`auditkit.builtin_checks`. It never writes files or prints: progress goes through
``ctx.track``; the scan turns what it returns into a :class:`~auditkit.results.Section`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Iterator, Literal, TypeVar

import numpy as np

from auditkit.data.base import AuditData
from auditkit.loading import AuditModel
from auditkit.results import Finding, Section

Budget = Literal["quick", "standard", "thorough"]
T = TypeVar("T")


@dataclass
class ScanConfig:
    """Settings of one scan. ``samples`` bounds the test samples used by expensive checks."""

    samples: int = 256
    seed: int = 0
    budget: Budget = "standard"
    device: str = "auto"
    only: list[str] | None = None
    skip: list[str] | None = None
    epsilons: dict[str, list[float]] | None = None
    batch_size: int = 256
    defenses: list[str] | None = None  # names of registered defenses to evaluate (--defense)
    threads: int | None = None  # torch intra-op threads; None keeps torch's default

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ScanContext:
    """Everything a check may read: the model, the data, the config and earlier sections."""

    model: AuditModel
    data: AuditData
    config: ScanConfig
    eval_index: np.ndarray  # indices into the test split used by expensive checks
    sections: dict[str, Section] = field(default_factory=dict)
    track: Callable[..., Iterable[Any]] = lambda it, **_: it  # progress wrapper (tqdm-like)
    cache: dict[str, Any] = field(default_factory=dict)  # shared work between checks (e.g. logits)
    incomplete: list[str] = field(default_factory=list)  # what the running check could not do

    def mark_incomplete(self, what: str) -> None:
        """Record that the running check could not do ``what`` (an attack raised, a method
        failed): its section is marked incomplete and the verdict says so."""
        if what not in self.incomplete:
            self.incomplete.append(what)

    @property
    def x_eval(self) -> np.ndarray:
        return self.data.x_test[self.eval_index]

    @property
    def y_eval(self) -> np.ndarray:
        return self.data.y_test[self.eval_index]

    def rng(self, name: str) -> np.random.Generator:
        """A generator seeded from the scan seed and ``name``: independent and reproducible."""
        return np.random.default_rng([self.config.seed, zlib.crc32(name.encode())])

    def test_logits(self) -> np.ndarray:
        """Logits ``[N_test, C]`` of the whole test split, computed once per scan."""
        if "test_logits" not in self.cache:
            self.cache["test_logits"] = self.model.logits(self.data.x_test, self.config.batch_size)
        return self.cache["test_logits"]


class Check:
    """Base class of registered checks."""

    name: ClassVar[str]
    title: ClassVar[str]
    tasks: ClassVar[tuple[str, ...]]
    needs_eager: ClassVar[bool] = False

    def skip_reason(self, ctx: ScanContext) -> str | None:
        """Why this check cannot run here (None when it can)."""
        if ctx.model.card.task not in self.tasks:
            return f"not applicable to task {ctx.model.card.task}"
        if self.needs_eager and not ctx.model.eager:
            return f"needs an eager module for layer hooks; {ctx.model.format} models have none"
        return None

    def run(self, ctx: ScanContext) -> tuple[dict[str, Any], list[Finding]]:
        raise NotImplementedError


_CHECKS: dict[str, type[Check]] = {}


def register_check(cls: type[Check]) -> type[Check]:
    if cls.name in _CHECKS:
        raise ValueError(f"check {cls.name!r} is registered twice")
    _CHECKS[cls.name] = cls
    return cls


def registered_checks() -> dict[str, type[Check]]:
    """The checks registered so far, in registration order. The registry imports no check: the
    built-in ones register when their modules are imported (:mod:`auditkit.builtin_checks`)."""
    return dict(_CHECKS)


def unregister_check(name: str) -> None:
    """Remove check ``name`` from the registry (tests that register a check clean up with it)."""
    _CHECKS.pop(name, None)


def iter_batches(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))
