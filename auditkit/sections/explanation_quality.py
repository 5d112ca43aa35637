"""The ``explanation-quality`` check's payload: IG completeness, the model-parameter
randomisation test, deletion/insertion against a random ranking, infidelity/sensitivity and
agreement with the data's known causes (written by :mod:`auditkit.explain.check`).

The rules that turn these figures into yes/no statements live here, once, and the check's
findings and every report use them:

* **beats a random ranking** (:meth:`DeletionInsertion.beats_random`): on a curve (deletion or
  insertion), the method's own curve beats the random ranking's on more than half of the
  samples (per-sample win rate > 50%). The mean-AUC comparison the check also stores
  (``beats_random`` in the JSON, :attr:`DeletionInsertion.mean_auc_better`) is shown as the AUCs
  themselves, never as "beats random".
* **passes the randomisation test** (:attr:`RandomisedMethod.passes`): after every layer is
  re-initialised, both rank correlations fall below the threshold. The two correlations are
  Spearman's ρ of the *absolute* maps and of the *signed* maps; either may be negative, so
  neither is written "|ρ|" (:data:`RHO_ABS_LABEL`, :data:`RHO_SIGNED_LABEL`).
* **agrees with the known causes** (:meth:`TabularGroundTruth.agrees`,
  :meth:`TokenGroundTruth.agrees`): precision@k >= 0.75 / hit@1 >= 0.5.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from auditkit.sections.common import Proportion, Strict

BEATS_RANDOM_RULE = ("beats a random ranking on a curve when it does so on more than half of the samples "
                     "(per-sample win rate > 50%)")
RHO_ABS_LABEL = "final Spearman ρ of |attribution|"
RHO_SIGNED_LABEL = "final Spearman ρ of signed attribution"
PRECISION_AT_K_MIN = 0.75  # tabular: share of the top-k features that are causal
HIT_AT_1_MIN = 0.5  # text: share of sentences whose top token decides the label
Curve = Literal["deletion", "insertion"]


class StepsRun(Strict):
    n_steps: int
    median: float
    p95: float


class IGCompleteness(Strict):
    """Relative completeness error of integrated gradients per sample (median, p95, max) at
    ``n_steps``; ``met`` when p95 < ``tol``. ``history``: each step count tried."""

    n_steps: int
    met: bool
    tol: float
    median: float
    p95: float
    max: float
    n_samples: int
    history: list[StepsRun] = []


class CascadeStep(Strict):
    layer: str
    spearman_abs: float
    spearman_raw: float


class RandomisedMethod(Strict):
    """One method under cascading randomisation. ``final_spearman_abs``: Spearman's ρ between
    the absolute maps of the trained and the fully randomised model (it can be negative: it
    is ρ of |maps|, not |ρ|); ``final_spearman_raw``: the same for the signed maps."""

    cascade: list[CascadeStep]
    final_spearman_abs: float
    final_spearman_raw: float
    input_similarity: float | None = None
    verdict: str

    @property
    def passes(self) -> bool:
        return self.verdict.startswith("passes")

    @property
    def why(self) -> str | None:
        """The verdict's explanation after ``"fails:"`` (None when it passes)."""
        return None if self.passes else (self.verdict.partition(":")[2].strip() or self.verdict)


class Randomisation(Strict):
    layers: list[str]
    n_samples: int
    threshold: float
    methods: dict[str, RandomisedMethod]
    skipped: dict[str, str] = {}

    @property
    def passed(self) -> list[str]:
        return [m for m, r in self.methods.items() if r.passes]


class AucComparison(Strict):
    deletion: bool
    insertion: bool


class DeletionInsertion(Strict):
    """Mean target probability as the top fraction of features is deleted (inserted), for the
    method's ranking and a random one; AUCs of the mean curves; per-sample win rates."""

    fractions: list[float]
    deletion: list[float]
    insertion: list[float]
    deletion_random: list[float]
    insertion_random: list[float]
    deletion_auc: float
    deletion_auc_random: float
    insertion_auc: float
    insertion_auc_random: float
    deletion_win_rate: float
    insertion_win_rate: float
    n_samples: int
    mean_auc_better: AucComparison = Field(alias="beats_random")

    def wins(self, curve: Curve) -> Proportion:
        """Share of samples whose own ``curve`` beats the random ranking's, with its interval."""
        rate = self.deletion_win_rate if curve == "deletion" else self.insertion_win_rate
        return Proportion.of_fraction(rate, self.n_samples)

    def beats_random(self, curve: Curve) -> bool:
        """See :data:`BEATS_RANDOM_RULE`."""
        rate = self.deletion_win_rate if curve == "deletion" else self.insertion_win_rate
        return rate > 0.5

    @property
    def no_better_than_random(self) -> bool:
        """Beats the random ranking on neither curve."""
        return not (self.beats_random("deletion") or self.beats_random("insertion"))


class InfidelitySensitivity(Strict):
    method: str
    infidelity_mean: float
    infidelity_median: float
    sensitivity_mean: float
    sensitivity_median: float
    n_samples: int
    n_perturb: int
    noise_scale: float
    radius: float


class Skipped(Strict):
    skipped: str


class TabularGroundTruth(Strict):
    """Global importance against the causal features (rank 1 = most important)."""

    ranks: dict[str, float]
    k: int
    precision_at_k: float
    causal_outrank_non_causal: bool
    auroc: float
    unlabelled: list[str] = []

    @property
    def agrees(self) -> bool:
        return self.precision_at_k >= PRECISION_AT_K_MIN


class TokenScores(Strict):
    hit_at_1: float
    hit_at_k: float
    mean_first_rank: float


class TokenGroundTruth(TokenScores):
    """Per-token attributions against the tokens that decide the label; ``random``: the same
    figures for a random ranking."""

    random: TokenScores
    n_sentences: int
    n_skipped: int

    @property
    def agrees(self) -> bool:
        return self.hit_at_1 >= HIT_AT_1_MIN


class ExplanationQualityData(Strict):
    """Each part is absent where it did not apply (no IG, text has no infidelity, no ground
    truth outside the zoo's synthetic data)."""

    ig_completeness: IGCompleteness | None = None
    randomisation: Randomisation | None = None
    deletion_insertion: dict[str, DeletionInsertion] = {}
    infidelity_sensitivity: dict[str, InfidelitySensitivity | Skipped] | Skipped | None = None
    ground_truth: dict[str, TabularGroundTruth | TokenGroundTruth] = {}

    @property
    def beating_random(self) -> list[str]:
        """Methods that beat a random ranking on at least one curve (:data:`BEATS_RANDOM_RULE`)."""
        return [m for m, c in self.deletion_insertion.items() if not c.no_better_than_random]

    @property
    def agreeing(self) -> list[str]:
        """Methods whose importance agrees with the known causes."""
        return [m for m, g in self.ground_truth.items() if g.agrees]
