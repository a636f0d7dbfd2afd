"""Reading a study TOML file into a validated ``StudyConfig``."""

from __future__ import annotations

import dataclasses
import glob
import math
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from lawsearch._errors import did_you_mean
from lawsearch.config._checks import validate
from lawsearch.config._schema import (
    BudgetsConfig,
    CorpusConfig,
    DomainConfig,
    LawConfig,
    ModelConfig,
    ObjectiveConfig,
    PrunerConfig,
    SearchConfig,
    SearchSpaceConfig,
    StudyConfig,
    StudySection,
    TokenizerConfig,
    TrainConfig,
)
from lawsearch.laws import LAWS

__all__ = ["builtin_domains", "load_study", "parse_study"]

_SECTIONS: dict[str, type] = {
    "study": StudySection,
    "model": ModelConfig,
    "tokenizer": TokenizerConfig,
    "corpus": CorpusConfig,
    "search_space": SearchSpaceConfig,
    "budgets": BudgetsConfig,
    "law": LawConfig,
    "pruner": PrunerConfig,
    "search": SearchConfig,
    "train": TrainConfig,
    "objective": ObjectiveConfig,
}
_ALL_SECTIONS = (*_SECTIONS, "domains")


def load_study(
    path: str | Path, *, run_root: str | Path | None = None, storage: str | None = None
) -> StudyConfig:
    """Read and validate a study TOML file.

    Args:
        path: the study file.
        run_root: the folder the default ``runs/<name>`` is made in (default: the study
            file's folder; the CLI's ``--root``, relative to the current directory).
        storage: replaces ``study.storage`` (``lawsearch worker --storage URL``).

    One rule for paths: every relative path written in a study file (domain paths,
    ``model.config``, ``tokenizer.path``, ``study.dir``, a journal ``study.storage``)
    is read from the study file's folder, wherever the command runs; only the
    default run folder moves with ``run_root``.

    Raises:
        ValueError: the file is missing, is not TOML, or a key is wrong; the message
            names the dotted key and the fix.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"study file {str(p)!r} not found; pass the path to a .toml study.")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(
            f"{p}: not valid TOML: {exc}; fix the syntax there (strings in quotes, lists in "
            "[...], one `key = value` per line)."
        ) from None
    if storage:
        study = data.get("study")
        data = {
            **data,
            "study": {**study, "storage": storage} if isinstance(study, dict) else study,
        }
    return parse_study(
        data, base_dir=p.parent, run_root=p.parent if run_root is None else run_root, source=str(p)
    )


def parse_study(
    data: Mapping[str, Any],
    *,
    base_dir: str | Path = ".",
    run_root: str | Path | None = None,
    source: str = "",
) -> StudyConfig:
    """Validate a parsed TOML mapping into a ``StudyConfig`` (see ``load_study``)."""
    _check_keys(data, _ALL_SECTIONS, "")
    for required in ("study", "budgets", "domains"):
        if required not in data:
            raise ValueError(
                f"[{required}] is missing; a study needs [study], [budgets] and "
                f"at least one [domains.NAME] table."
            )
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        table = data.get(name, {})
        if not isinstance(table, Mapping):
            raise ValueError(f"`{name}` must be a table ([{name}]); got {table!r}.")
        if cls is LawConfig:
            sections[name] = _parse_law(table)
        else:
            sections[name] = _build(cls, table, name)
    base = Path(base_dir)
    domains = _parse_domains(data["domains"], base)
    sections["model"] = _replace(
        sections["model"],
        config=_resolve_one(sections["model"].config, base, "model.config"),
        init=_resolve_one(sections["model"].init, base, "model.init"),
    )
    sections["tokenizer"] = _replace(
        sections["tokenizer"],
        path=_resolve_one(sections["tokenizer"].path, base, "tokenizer.path"),
    )
    study = _resolve_study(sections["study"], base, Path(run_root) if run_root else base)
    cfg = StudyConfig(
        study=study,
        model=sections["model"],
        tokenizer=sections["tokenizer"],
        corpus=sections["corpus"],
        domains=domains,
        search_space=sections["search_space"],
        budgets=sections["budgets"],
        law=sections["law"],
        pruner=sections["pruner"],
        search=sections["search"],
        train=sections["train"],
        objective=sections["objective"],
        source=source,
    )
    validate(cfg)
    return cfg


#: keys people carry over from other tools: what lawsearch does instead
_NOT_SETTINGS = {
    "sampler": "lawsearch always proposes with its LawSampler (retrieval over the mixture and "
    "schedule, TPE for the rest); remove it",
    "pruner.name": "lawsearch always stops candidates with its LawPruner (set its options in "
    "[pruner], or `pruner.enabled = false` to train every candidate fully); remove it",
    "pruner.type": "lawsearch always stops candidates with its LawPruner (set its options in "
    "[pruner], or `pruner.enabled = false` to train every candidate fully); remove it",
    "search.sampler": "lawsearch always proposes with its LawSampler (retrieval over the "
    "mixture and schedule, TPE for the rest); remove it",
    "search.pruner": "the pruner is configured in [pruner] (`pruner.enabled = false` turns it "
    "off); remove it",
}


def _check_keys(table: Mapping[str, Any], allowed: tuple[str, ...], prefix: str) -> None:
    for key in table:
        if key not in allowed:
            where = f"{prefix}.{key}" if prefix else key
            if where in _NOT_SETTINGS:
                raise ValueError(
                    f"`{where}` is not a setting: {_NOT_SETTINGS[where]}"
                    f" (valid{' in [' + prefix + ']' if prefix else ''}: {', '.join(allowed)})."
                )
            raise ValueError(
                f"`{where}` is not a known key"
                + (f" of [{prefix}]" if prefix else "")
                + did_you_mean(key, allowed).rstrip(".")
                + f" (valid: {', '.join(allowed)})."
            )


def _build(cls: type, table: Mapping[str, Any], prefix: str, **extra: Any) -> Any:
    """Build a section dataclass from a TOML table, checking keys and value types."""
    hints = typing.get_type_hints(cls)
    names = tuple(f.name for f in fields(cls) if f.name not in extra)
    _check_keys(table, names, prefix)
    kwargs: dict[str, Any] = dict(extra)
    for f in fields(cls):
        if f.name in extra:
            continue
        key = f"{prefix}.{f.name}"
        if f.name in table:
            kwargs[f.name] = _coerce(table[f.name], hints[f.name], key)
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ValueError(f"`{key}` is required; add `{f.name} = ...` to [{prefix}].")
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"`{key}` must be true or false; got {value!r}.")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"`{key}` must be an integer; got {value!r}.")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"`{key}` must be a number; got {value!r}.")
        if not math.isfinite(value):
            raise ValueError(f"`{key}` must be finite; got {value!r}.")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"`{key}` must be a string; got {value!r}.")
        return value
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            items = value if isinstance(value, list) else [value]
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(items))
        # a [low, high] range; one number fixes the value
        items = value if isinstance(value, list) else [value, value]
        if len(items) != len(args):
            raise ValueError(f"`{key}` must be [low, high] or one number; got {value!r}.")
        out = tuple(
            _coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(items, args, strict=True))
        )
        if out[0] > out[1]:
            raise ValueError(f"`{key}` must be [low, high] with low <= high; got {value!r}.")
        return out
    if origin in (dict, Mapping) or hint is Mapping:
        if not isinstance(value, Mapping):
            raise ValueError(f"`{key}` must be a table; got {value!r}.")
        return dict(value)
    raise TypeError(f"unsupported config type {hint!r} for {key}")  # pragma: no cover


def _parse_law(table: Mapping[str, Any]) -> LawConfig:

    name = table.get("name", "power")
    if not isinstance(name, str):
        raise ValueError(f"`law.name` must be a string; got {name!r}.")
    if name not in LAWS:
        raise ValueError(
            f"`law.name` = {name!r} is not a known law; choose one of {sorted(LAWS)}"
            + did_you_mean(name, LAWS)
        )
    options = {k: v for k, v in table.items() if k != "name"}
    law_cls = LAWS[name]
    valid = tuple(f.name for f in fields(law_cls) if f.init)
    for key in options:
        if key not in valid:
            raise ValueError(
                f"`law.{key}` is not an option of the {name!r} law"
                + did_you_mean(key, valid).rstrip(".")
                + f" (valid: {', '.join(valid)})."
            )
    cfg = LawConfig(name=name, options=options)
    try:
        cfg.build()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"[law] {name!r}: {exc}") from None
    return cfg


def _parse_domains(table: Any, base: Path) -> tuple[DomainConfig, ...]:
    if not isinstance(table, Mapping) or not table:
        raise ValueError(
            "`domains` must hold at least one [domains.NAME] table, e.g. "
            '[domains.code] builtin = "python_stdlib".'
        )
    out = []
    for name, sub in table.items():
        prefix = f"domains.{name}"
        if not isinstance(sub, Mapping):
            raise ValueError(f"`{prefix}` must be a table ([{prefix}]); got {sub!r}.")
        dom = _build(DomainConfig, sub, prefix, name=name)
        given = [k for k in ("builtin", "paths", "dataset") if getattr(dom, k)]
        if len(given) != 1:
            raise ValueError(
                f'`{prefix}` needs exactly one source: `builtin = "..."` (a demo domain), '
                f'`paths = [...]` (local files) or `dataset = "..."` (a cached `datasets` '
                f"name); got " + (" and ".join(given) if given else "neither") + "."
            )
        if dom.builtin:
            _check_builtin(dom.builtin, f"{prefix}.builtin")
        if dom.held_out and not dom.paths:
            raise ValueError(f"`{prefix}.held_out` goes with `paths` (local files) only.")
        resolved = _resolve_paths(dom.paths, base, f"{prefix}.paths")
        held_out = _resolve_paths(dom.held_out, base, f"{prefix}.held_out")
        for bound in ("low", "high"):
            v = getattr(dom, bound)
            if v != -1.0 and not 0.0 <= v <= 1.0:
                raise ValueError(f"`{prefix}.{bound}` must be in [0, 1]; got {v!r}.")
        out.append(_replace(dom, paths=resolved, held_out=held_out))
    return tuple(out)


def _resolve_one(raw: str, base: Path, key: str) -> str:
    """A path key resolved against the study file's folder; it must exist ("" stays "")."""
    if not raw:
        return ""
    path = Path(raw).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.exists():
        raise ValueError(
            f"`{key}` = {raw!r}: no such file or folder ({path}); fix the path (relative "
            "paths are read from the study file's folder)."
        )
    return str(path)


def _resolve_paths(paths: tuple[str, ...], base: Path, key: str) -> tuple[str, ...]:
    resolved = []
    for i, raw in enumerate(paths):
        path = Path(raw).expanduser()
        path = path if path.is_absolute() else base / path
        if any(c in raw for c in "*?["):
            if not glob.glob(str(path), recursive=True):
                raise ValueError(
                    f"`{key}[{i}]` = {raw!r}: the pattern matches no file ({path}); fix the "
                    "pattern (relative paths are read from the study file's folder)."
                )
        elif not path.exists():
            raise ValueError(
                f"`{key}[{i}]` = {raw!r}: no such file or folder ({path}); fix the path "
                f"(relative paths are read from the study file's folder)."
            )
        resolved.append(str(path))
    return tuple(resolved)


def builtin_domains() -> tuple[str, ...]:
    """Names of the demo domains the corpus builder ships (empty if unavailable)."""
    try:
        from lawsearch.train import corpus
    except ImportError:
        return ()
    names = getattr(corpus, "DEMO_DOMAINS", None) or getattr(corpus, "BUILTIN_DOMAINS", None)
    return tuple(names) if names else ()


def _check_builtin(name: str, key: str) -> None:
    known = builtin_domains()
    if known and name not in known:
        raise ValueError(
            f"`{key}` = {name!r} is not a builtin demo domain; choose one of {list(known)}"
            + did_you_mean(name, known)
        )


def _replace(obj: Any, **changes: Any) -> Any:
    return dataclasses.replace(obj, **changes)


def _resolve_study(study: StudySection, base: Path, root: Path) -> StudySection:
    """``study.dir`` and a journal ``study.storage`` from the study file's folder (``base``);
    the default ``runs/<name>`` under ``root``."""
    if not study.name or any(c in study.name for c in "/\\") or study.name.startswith("."):
        raise ValueError(
            f"`study.name` must be a non-empty name without slashes; got {study.name!r}."
        )
    if study.dir:
        run_dir = Path(study.dir).expanduser()
        run_dir = (run_dir if run_dir.is_absolute() else base / run_dir).absolute()
    else:
        run_dir = (root / "runs" / study.name).absolute()
    storage = study.storage
    lowered = storage.lower()
    if lowered.startswith("sqlite"):
        raise ValueError(
            f"`study.storage` = {storage!r}: SQLite cannot host parallel workers (it locks the "
            f"whole database); leave `storage` unset for a journal file under {run_dir}, or "
            f"use a PostgreSQL URL such as 'postgresql://user@host/db'."
        )
    if "://" in storage and not lowered.startswith(("postgresql", "postgres")):
        raise ValueError(
            f"`study.storage` = {storage!r} is not supported; use a journal file path or a "
            f"'postgresql://' URL."
        )
    if not storage:
        storage = str(run_dir / "journal.log")
    elif "://" not in storage:
        path = Path(storage).expanduser()
        storage = str((path if path.is_absolute() else base / path).absolute())
    return _replace(study, dir=str(run_dir), storage=storage)
