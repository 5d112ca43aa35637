"""The audit card: what the scan needs to know about a model that its weights do not say.

The card travels inside a zoo ``model.pt`` (key ``"card"``), inside a TorchScript archive
(``_extra_files["card.json"]``), or beside any model file as ``<stem>.card.json``.
See DESIGN.md §3.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from auditkit.errors import CardError  # noqa: F401  (re-exported)
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Task = Literal["image-classification", "text-classification", "tabular-classification", "gan"]
FeatureKind = Literal["continuous", "integer", "categorical", "binary"]



class FeatureSpec(BaseModel):
    """One column of a tabular model's input, in the model's own (raw, unscaled) units.

    Categorical features are encoded as integer codes ``0..len(categories)-1``.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: FeatureKind
    min: float
    max: float
    categories: list[str] | None = None
    changeable: bool = Field(
        True, description="Whether an attacker (e.g. a fraudster) can change this feature."
    )
    unit: str | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _check(self) -> "FeatureSpec":
        if self.max < self.min:
            raise ValueError(f"feature {self.name!r}: max {self.max} < min {self.min}")
        if self.kind == "categorical":
            if not self.categories:
                raise ValueError(f"categorical feature {self.name!r} needs 'categories'")
            if self.min != 0 or self.max != len(self.categories) - 1:
                raise ValueError(
                    f"categorical feature {self.name!r}: range must be 0..{len(self.categories) - 1}"
                )
        if self.kind == "binary" and (self.min, self.max) != (0, 1):
            raise ValueError(f"binary feature {self.name!r}: range must be 0..1")
        return self


class Preprocessing(BaseModel):
    """Per-channel normalisation. ``applied="inside"`` means the model does it itself."""

    model_config = ConfigDict(extra="forbid")

    mean: list[float]
    std: list[float]
    applied: Literal["inside", "outside"] = "inside"


class TextSpec(BaseModel):
    """Vocabulary of a token-id model. Index in ``vocab`` is the token id."""

    model_config = ConfigDict(extra="forbid")

    vocab: list[str]
    pad_token: str = "<pad>"
    unk_token: str = "<unk>"

    @model_validator(mode="after")
    def _check(self) -> "TextSpec":
        for tok in (self.pad_token, self.unk_token):
            if tok not in self.vocab:
                raise ValueError(f"special token {tok!r} is not in the vocabulary")
        return self

    @property
    def pad_id(self) -> int:
        return self.vocab.index(self.pad_token)

    @property
    def unk_id(self) -> int:
        return self.vocab.index(self.unk_token)


class AuditCard(BaseModel):
    """Typed, validated model metadata (DESIGN.md §3)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    task: Task
    input_shape: list[int] = Field(description="Shape of one sample, without the batch axis.")
    input_dtype: Literal["float32", "int64"] = "float32"
    bounds: tuple[float, float] | None = Field(
        None, description="Valid input range; attacks stay inside it. None for token ids."
    )
    preprocessing: Preprocessing | None = None
    class_names: list[str] = Field(default_factory=list)
    positive_class: str | None = None
    features: list[FeatureSpec] | None = None
    text: TextSpec | None = None
    dataset: str | None = Field(None, description="Data spec of the reference dataset.")
    architecture: str | None = None
    arch_kwargs: dict[str, Any] = Field(default_factory=dict)
    latent_dim: int | None = Field(None, description="GAN only: size of the latent vector.")
    epsilons: dict[str, list[float]] = Field(
        default_factory=dict, description="Default attack budgets per norm, e.g. {'linf': [...]}."
    )
    description: str | None = None

    @model_validator(mode="after")
    def _check(self) -> "AuditCard":
        if self.task != "gan" and len(self.class_names) < 2:
            raise ValueError("a classifier's card needs at least two 'class_names'")
        if self.positive_class is not None and self.positive_class not in self.class_names:
            raise ValueError(f"positive_class {self.positive_class!r} is not in class_names")
        if self.task == "tabular-classification":
            if not self.features:
                raise ValueError("a tabular card needs 'features' (the feature schema)")
            if self.input_shape != [len(self.features)]:
                raise ValueError(
                    f"input_shape {self.input_shape} does not match {len(self.features)} features"
                )
        if self.task == "text-classification":
            if self.text is None:
                raise ValueError("a text card needs 'text' (vocabulary and special tokens)")
            if self.input_dtype != "int64":
                raise ValueError("a text card's input_dtype must be 'int64' (token ids)")
        if self.task == "gan" and not self.latent_dim:
            raise ValueError("a GAN card needs 'latent_dim'")
        if self.bounds is not None and self.bounds[1] <= self.bounds[0]:
            raise ValueError(f"bounds {self.bounds} are empty")
        return self

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def positive_index(self) -> int | None:
        return None if self.positive_class is None else self.class_names.index(self.positive_class)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "card") -> "AuditCard":
        """Validate ``data``; raise :class:`CardError` with a one-line message naming the field."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "card"
            raise CardError(
                f"{source}: field '{where}': {err['msg']} "
                f"(fix the card JSON, or pass the value with a CLI flag)"
            ) from None

    @classmethod
    def read(cls, path: str | Path) -> "AuditCard":
        from auditkit.files import read_user_text

        path = Path(path)
        text = read_user_text(path, "card file", CardError)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CardError(f"card file {path} is not valid JSON: {exc}") from None
        except RecursionError:
            raise CardError(f"card file {path} is nested too deeply to be a card") from None
        if not isinstance(data, dict):
            raise CardError(f"card file {path} holds a JSON {type(data).__name__}, not an object of card fields")
        return cls.from_dict(data, source=str(path))

    def write(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    def updated(self, **overrides: Any) -> "AuditCard":
        """A copy with ``overrides`` applied (None values ignored), validated again."""
        data = self.model_dump()
        data.update({k: v for k, v in overrides.items() if v is not None})
        return AuditCard.from_dict(data, source="card with overrides")
