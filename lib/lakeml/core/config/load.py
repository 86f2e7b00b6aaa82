"""The one config loader: environments (where things run) and use cases (what runs).

    conf/
      envs/<env>.yaml          Spark master and confs, storage locations, MLflow URIs
      <usecase>/usecase.yaml   sources, tables, features (SQL files), label, model, scoring
      <usecase>/sql/...        the SQL the use case runs
      <usecase>/demo.py        its demo data maker, if it has one (``demo.maker``)

Every file is validated against a typed schema on load. Unknown keys, wrong types and
missing files stop with a ``ConfigError`` that names the file and the key, e.g.::

    conf/<usecase>/usecase.yaml: model.classifier: Input should be 'logistic_regression',
    'random_forest', 'gbt' or 'xgboost' (got 'xgbost')

Values of the form ``${VAR}`` or ``${VAR:-default}`` are read from the environment, which
is how secrets (passwords, tokens) get in: never from a file. A ``${VAR}`` without a default
that is not set stops with a ``ConfigError`` naming the file and the key that refers to it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from lakeml.core.config.env import EnvConfig
from lakeml.core.config.usecase import UseCaseConfig
from lakeml.core.errors import ConfigError

# ${VAR} or ${VAR:-default}; a default may hold references itself (${A:-${B:-x}/y}): the
# innermost are resolved first. ${env.VAR} is left alone: Hadoop reads it when it is used.
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^${}]*))?\}")
_ANY_REF = re.compile(r"\$\{(?:env\.)?([A-Za-z_][A-Za-z0-9_]*)")


def _interpolate(node: Any, path: Path, key: str = "") -> Any:
    if isinstance(node, dict):
        return {k: _interpolate(v, path, f"{key}.{k}" if key else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, path, f"{key}.{i}") for i, v in enumerate(node)]
    if isinstance(node, str):

        values: list[str] = []  # what the environment gave, never scanned again

        def repl(m: re.Match) -> str:
            var, default = m.group(1), m.group(2)
            if var in os.environ:
                values.append(os.environ[var])
                return f"\0{len(values) - 1}\0"
            if default is not None:
                return default
            raise ConfigError(f"{path}: {key or '(top level)'}: environment variable {var} is not set (referenced as ${{{var}}})")

        while (out := _ENV_REF.sub(repl, node)) != node:
            node = out
        return re.sub("\0(\\d+)\0", lambda m: values[int(m.group(1))], node)
    return node


def referenced_vars(path: str | Path) -> list[str]:
    """Names of the environment variables a config file's values refer to (``${VAR}``,
    ``${VAR:-default}``, Hadoop's ``${env.VAR}``), in order of first use. spark-submit.sh
    hands the ones that are set to a driver that runs on the cluster, which reads the same
    file again."""
    names: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif isinstance(node, str):
            for m in _ANY_REF.finditer(node):
                if m.group(1) not in names:
                    names.append(m.group(1))

    walk(yaml.safe_load(Path(path).read_text()) or {})
    return names


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return _interpolate(data, path)


def _validate(model: type[BaseModel], data: dict, path: Path) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check the spelling)"
            elif "input" in err and err["type"] != "missing":
                msg = f"{msg} (got {err['input']!r})"
            lines.append(f"{path}: {key}: {msg}")
        raise ConfigError("\n".join(lines)) from None


def load_env(conf_dir: str | Path, name: str) -> EnvConfig:
    """Load ``conf/envs/<name>.yaml``."""
    conf_dir = Path(conf_dir).resolve()
    path = conf_dir / "envs" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (conf_dir / "envs").glob("*.yaml"))
        raise ConfigError(f"{path}: unknown env {name!r}; known envs: {', '.join(known) or 'none'}")
    data = _read_yaml(path)
    data.setdefault("name", name)
    env = _validate(EnvConfig, data, path)
    env.source_file = str(path)
    env.project_root = str(conf_dir.parent)
    return env


def known_usecases(conf_dir: str | Path) -> list[str]:
    """The use case folders of ``conf_dir`` (for error messages)."""
    return sorted(p.parent.name for p in Path(conf_dir).glob("*/usecase.yaml"))


def load_usecase(conf_dir: str | Path, name: str | None, env: EnvConfig | None = None) -> UseCaseConfig:
    """Load ``conf/<name>/usecase.yaml`` and check every file it names (SQL, demo maker).
    ``name`` None: the env's default use case (``usecase:`` of the env file)."""
    conf_dir = Path(conf_dir).resolve()
    if name is None:
        name = env.usecase if env is not None else None
        if not name:
            where = f"set usecase: in {env.source_file}" if env is not None else "name one"
            known = ", ".join(known_usecases(conf_dir)) or "none"
            raise ConfigError(f"no use case given: pass --usecase NAME or {where}; known use cases: {known}")
    uc_dir = conf_dir / name
    path = uc_dir / "usecase.yaml"
    if not path.is_file():
        raise ConfigError(f"{path}: unknown use case {name!r}; known use cases: {', '.join(known_usecases(conf_dir)) or 'none'}")
    uc = _validate(UseCaseConfig, _read_yaml(path), path)
    uc.source_file = str(path)
    uc.conf_dir = str(uc_dir)
    refs = [("features.population_sql", uc.features.population_sql), ("label.sql", uc.label.sql)]
    refs += [(f"features.sql.{i}", s.file) for i, s in enumerate(uc.features.sql)]
    for key, rel in refs:
        if not (uc_dir / rel).is_file():
            raise ConfigError(f"{path}: {key}: SQL file {rel!r} not found under {uc_dir}")
    if uc.demo is not None and not (uc_dir / uc.demo.maker).is_file():
        raise ConfigError(f"{path}: demo.maker: Python file {uc.demo.maker!r} not found under {uc_dir}")
    m = uc.model
    if len(set(m.categorical) | set(m.numeric)) != len(m.categorical) + len(m.numeric):
        raise ConfigError(f"{path}: model: a column is listed both as categorical and numeric")
    taken = {uc.features.entity: "features.entity", "as_of_date": "the snapshot column", uc.label.column: "label.column"}
    taken.update({c: "a model column" for c in (*m.categorical, *m.numeric)})
    if m.probability_column in taken:
        raise ConfigError(f"{path}: model.probability_column: {m.probability_column!r} is already {taken[m.probability_column]}")
    return uc


def to_yaml(cfg: BaseModel) -> str:
    """The resolved config as YAML (logged with every training run)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
