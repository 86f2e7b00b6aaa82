"""The reference side of drift, the ``Profile`` type: what drift needs of the rows a model
version was trained on. ``lakeml.monitor.drift`` computes and compares profiles,
``lakeml.monitor.reference`` is their stored form."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Profile:
    """What drift needs of the reference, computed once per model version and stored
    (``lakeml.monitor.reference``): the bin edges of every numeric feature and of the
    probability, and the reference's count in every bin and category."""

    kinds: dict[str, str]  # feature -> numeric | categorical | prediction
    fine: dict[str, list[float]]  # KS bins (numeric features)
    coarse: dict[str, list[float]]  # PSI / JS / chi-square bins (numeric features)
    counts: dict[tuple[str, str | None], int]  # (feature, bin key or category; None: nulls) -> rows
    description: str = ""

    @property
    def numeric(self) -> list[str]:
        return [c for c, k in self.kinds.items() if k != "categorical"]

    @property
    def categorical(self) -> list[str]:
        return [c for c, k in self.kinds.items() if k == "categorical"]
