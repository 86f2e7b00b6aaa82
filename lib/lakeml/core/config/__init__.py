"""Typed configuration: environments (``env``), use cases (``usecase``), the data-quality
check language (``checks``) and the one loader (``load``)."""

from lakeml.core.config.checks import CheckSpec, QualitySpec
from lakeml.core.config.env import EnvConfig
from lakeml.core.config.load import known_usecases, load_env, load_usecase, referenced_vars, to_yaml
from lakeml.core.config.usecase import (
    ColumnSpec,
    DemoSpec,
    ExportSpec,
    FeaturesSpec,
    LabelSpec,
    ModelSpec,
    MonitoringSpec,
    RetrainingSpec,
    ScoringSpec,
    SourceSpec,
    TablesSpec,
    UseCaseConfig,
    ValidationSpec,
)

__all__ = [
    "CheckSpec", "ColumnSpec", "DemoSpec", "EnvConfig", "ExportSpec", "FeaturesSpec", "LabelSpec", "ModelSpec",
    "MonitoringSpec", "QualitySpec", "RetrainingSpec", "ScoringSpec", "SourceSpec", "TablesSpec", "UseCaseConfig", "ValidationSpec",
    "known_usecases", "load_env", "load_usecase", "referenced_vars", "to_yaml",
]
