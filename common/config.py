"""YAML configs validated against nested frozen dataclasses, plus the shared command line.

The dataclass is the schema and the YAML holds the values (STYLE 2.4): unknown keys and wrong types are
rejected with the key path and a "did you mean" hint, so that a typo never silently falls back to a default.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import importlib.util
import logging
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import torch
import yaml

from common.errors import TriVisionError
from common.io import atomic_write_text

T = TypeVar("T")

log = logging.getLogger(__name__)

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(TriVisionError, ValueError):
    """A config file or override does not match its schema."""


# ----------------------------------------------------------------------------------------------- CLI
def _default_devices() -> str:
    return "0" if torch.cuda.is_available() else "cpu"


def build_parser(description: str) -> argparse.ArgumentParser:
    """Parser with the flags every script shares; scripts add their own flags on top.

    -c/--config, --list-configs, --print-config, -d/--devices, --set KEY=VALUE, --resume [PATH|auto],
    -o/--out-dir, --overwrite, --allow-config-change, --checkpoint PATH, --report PATH, --debug. A script that defines one of these
    itself replaces the shared definition (conflict_handler="resolve").
    """
    parser = argparse.ArgumentParser(description=description, conflict_handler="resolve")
    parser.add_argument(
        "-c",
        "--config",
        type=config_arg,
        default=None,
        help="experiment YAML file, or the name of a shipped config (e.g. llrgbd, smmcl/llrgbd)",
    )
    parser.add_argument(
        "--list-configs", action=_ListConfigs, help="list the shipped configs (names for -c) and exit"
    )
    parser.add_argument(
        "--print-config",
        action=_PrintConfig,
        help="print the resolved config (YAML: file, --set and -o applied) and exit without running",
    )
    parser.add_argument(
        "-d",
        "--devices",
        default=_default_devices(),
        help='devices: "cpu", "0", "0-3" or "0,2" (several GPUs start one DDP process each)',
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, dotted key (repeatable), e.g. train.lr=1e-3; values are YAML, "
        "except for string and path keys, which take the text as it is",
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        metavar="PATH|auto",
        help='resume from a checkpoint file, or "auto" for the latest one in the output dir',
    )
    parser.add_argument("-o", "--out-dir", type=str, default=None, help="run directory (overrides config)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in an output dir that holds checkpoints (old files move to <out_dir>/old-<time>/)",
    )
    parser.add_argument(
        "--allow-config-change",
        action="store_true",
        help="resume although the config differs from the checkpoint's (the new values are applied)",
    )
    parser.add_argument(
        "--checkpoint", type=Path, default=None, metavar="PATH", help="checkpoint to evaluate or start from"
    )
    parser.add_argument(
        "--report", type=Path, default=None, metavar="PATH", help="write the JSON report here"
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of errors (also: TRIVISION_DEBUG=1)"
    )
    return parser


def config_dir() -> Path:
    """The shipped conf/ folder: installed as the data package tri_vision_conf, or the checkout's conf/."""
    spec = importlib.util.find_spec("tri_vision_conf")
    if spec is not None and spec.origin is not None:
        return Path(spec.origin).parent
    return Path(__file__).resolve().parents[1] / "conf"


def shipped_configs() -> list[str]:
    """Names of the shipped configs, relative to conf/ without .yaml ("smmcl/llrgbd", ...)."""
    root = config_dir()
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


def resolve_config(name: str | Path) -> Path:
    """An existing file as it is; otherwise a shipped config by name, so that an installed copy (without
    a checkout) runs `-c llrgbd`, `-c smmcl/llrgbd` or the README's `-c conf/smmcl/llrgbd.yaml`. A name
    that matches nothing comes back unchanged (reading it then fails with :func:`_missing_hint`)."""
    path = Path(name)
    if path.is_file():
        return path
    key = path.as_posix().removesuffix(".yaml").removeprefix("conf/")
    found = [n for n in shipped_configs() if n == key or n.endswith("/" + key)]
    if len(found) > 1:
        raise ConfigError(f"config {name}: several shipped configs match ({', '.join(found)}); name one")
    return config_dir() / f"{found[0]}.yaml" if found else path


def _missing_hint(path: Path) -> str:
    """' (did you mean smmcl/llrgbd?)' from the shipped names, else where to find them."""
    stem = path.name.removesuffix(".yaml")
    names = shipped_configs()
    hint = [n for n in names if difflib.get_close_matches(stem, [n.rsplit("/", 1)[-1]], cutoff=0.8)][:3]
    return f" (did you mean {', '.join(hint)}?)" if hint else " (--list-configs lists the shipped ones)"


def config_arg(value: str) -> Path:
    """argparse type of -c: :func:`resolve_config` with its message as the argument error."""
    try:
        return resolve_config(value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


class _ListConfigs(argparse.Action):
    """--list-configs: print the shipped config names and exit (like --help, before any other check)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(f"shipped configs (in {config_dir()}):")
        print("\n".join(f"  {n}" for n in shipped_configs()))
        parser.exit()


_print_requested = False  # set by --print-config; the next config the script resolves is printed


class _PrintConfig(argparse.Action):
    """--print-config: the config is only known once the script has loaded it, so this marks the request
    and :func:`load_config` / :func:`config_from_checkpoint` print their result and exit."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        global _print_requested
        _print_requested = True


def _resolved(cfg: T) -> T:
    """`cfg`, or (after --print-config) its YAML on stdout and exit 0 before anything runs."""
    if _print_requested:
        print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="", flush=True)
        raise SystemExit(0)
    return cfg


def cli_overrides(args: argparse.Namespace, out_dir_key: str = "train.out_dir") -> list[str]:
    """The --set overrides plus -o/--out-dir turned into an override of `out_dir_key`."""
    overrides = list(getattr(args, "overrides", None) or [])
    if getattr(args, "out_dir", None) is not None:
        overrides.append(f"{out_dir_key}={args.out_dir}")  # a string key: taken verbatim, never YAML
    return overrides


# ------------------------------------------------------------------------------------------ loading
def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist{_missing_hint(path)}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: top level must be a mapping, got {type(data).__name__}")
    base_name = data.pop("defaults", None)
    if base_name is None:
        return data
    if seen:
        raise ConfigError(f"config file {path}: only one level of `defaults:` include is allowed")
    base = _read_yaml(path.parent / str(base_name), seen + (path,))
    return _deep_merge(base, data)


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _expand_env(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        return {k: _expand_env(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def repl(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(
            f"{where}: environment variable ${{{name}}} is not set (set it, or override the key with --set)"
        )

    return _ENV_RE.sub(repl, value)


def _apply_override(data: dict[str, Any], item: str, schema: type) -> None:
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key.path=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    node: dict[str, Any] = data
    cls: Any = schema
    for depth, part in enumerate(parts):
        names = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else None
        path = ".".join(parts[: depth + 1])
        if names is not None and part not in names:
            raise ConfigError(
                f"override {item!r}: unknown key {path!r}{_suggest(part, names, parts[:depth])}"
            )
        if depth == len(parts) - 1:
            node[part] = _override_value(raw, _field_type(cls, part) if names is not None else None, item)
            return
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
        cls = _field_type(cls, part) if names is not None else None
        cls = _dataclass_in(cls)


def _is_text_type(tp: Any) -> tuple[bool, bool]:
    """(text field, optional) for str, Path, a Literal of strings, and each of them | None."""
    if tp in (str, Path) or (
        typing.get_origin(tp) is Literal and all(type(a) is str for a in typing.get_args(tp))
    ):
        return True, False
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and _is_text_type(args[0])[0]:
            return True, len(args) < len(typing.get_args(tp))
    return False, False


def _override_value(raw: str, tp: Any, item: str) -> Any:
    """An override's value: the text as it is for str/Path keys (paths and names such as "runs/exp #2"
    are never YAML-parsed; a quoted value is unquoted, and null/~ give None for optional keys), YAML
    for every other key."""
    text, optional = _is_text_type(tp)
    if text:
        stripped = raw.strip()
        if optional and stripped in ("null", "~", "None"):
            return None
        if len(stripped) >= 2 and stripped[0] == stripped[-1] and stripped[0] in "'\"":
            try:
                quoted = yaml.safe_load(stripped)
            except yaml.YAMLError:
                return raw
            return quoted if isinstance(quoted, str) else raw
        return raw
    try:
        return yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item!r}: value is not valid YAML: {exc}") from exc


def _suggest(name: str, valid: Iterable[str], prefix: list[str]) -> str:
    valid = list(valid)
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    pre = ".".join(prefix) + "." if prefix else ""
    if close:
        return f" (did you mean {pre + close[0]!r}?)"
    return f" (valid keys: {', '.join(valid)})"


def _field_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def _dataclass_in(tp: Any) -> Any:
    """The dataclass inside `tp` (itself, or the non-None member of an Optional), else None."""
    if dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            if dataclasses.is_dataclass(arg):
                return arg
    return None


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against annotation `tp` and convert YAML types (lists -> tuples, dicts -> dataclasses)."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} matches none of {_type_name(tp)} ({'; '.join(errors)})")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not one of {list(typing.get_args(tp))}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return _build(tp, value, where)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is list:
            item_t = args[0] if args else Any
            return [_convert(v, item_t, f"{where}[{i}]") for i, v in enumerate(value)]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
        if not args:
            return tuple(value)
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        args = typing.get_args(tp)
        if not args:
            return dict(value)
        return {_convert(k, args[0], where): _convert(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            # YAML 1.1 reads "1e-4" (no dot) as a string; accept it when it parses as a number.
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    pass
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{where}: expected a path string, got {value!r}")
        return Path(value)
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{where}: cannot check value {value!r} against type {_type_name(tp)}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _build(cls: type[T], data: Mapping[str, Any], where: str) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    prefix = f"{where}." if where else ""
    for key in data:
        if key not in fields:
            raise ConfigError(
                f"unknown key {prefix + str(key)!r}{_suggest(str(key), fields, where.split('.') if where else [])}"
            )
    kwargs = {}
    for name, field in fields.items():
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], prefix + name)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key {prefix + name!r} ({_type_name(hints[name])})")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}") from exc


def load_config(path: str | Path | None, schema: type[T], overrides: Iterable[str] = ()) -> T:
    """YAML file (optional) + `key.path=value` overrides -> validated instance of `schema`."""
    if not dataclasses.is_dataclass(schema):
        raise TypeError(f"schema must be a dataclass type, got {schema!r}")
    data = _read_yaml(Path(path)) if path is not None else {}
    for item in overrides:
        _apply_override(data, item, schema)
    data = _expand_env(data, "")
    try:
        return _resolved(_build(schema, data, ""))
    except ConfigError as exc:
        if path is not None:
            raise ConfigError(f"{path}: {exc}") from exc
        raise


# ------------------------------------------------------------------------------------------- saving
def config_to_dict(cfg: Any) -> Any:
    """Dataclass tree -> plain dict/list/str/number tree (YAML- and weights_only-safe)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, Mapping):
        return {str(k): config_to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [config_to_dict(v) for v in cfg]
    if isinstance(cfg, Path):
        return str(cfg)
    return cfg


def save_config(cfg: Any, run_dir: Path) -> Path:
    """Write the resolved config as run_dir/config.yaml, so a run can be reproduced from its folder."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.yaml"
    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    return path


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, Mapping) and tree:
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


class _Absent:
    """Marks a key that one of two compared configs does not have (printed as <absent>)."""

    def __repr__(self) -> str:
        return "<absent>"


ABSENT = _Absent()


def config_diff(old: Any, new: Any) -> list[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) for every leaf that differs between two config trees (dataclass
    or plain dict; tuples and lists compare equal); a key present on one side only has ABSENT on the
    other (e.g. a field the schema gained after the checkpoint was written)."""
    a, b = _flatten(config_to_dict(old)), _flatten(config_to_dict(new))
    keys = sorted(set(a) | set(b))
    return [(k, a.get(k, ABSENT), b.get(k, ABSENT)) for k in keys if a.get(k, ABSENT) != b.get(k, ABSENT)]


def _drop_removed_keys(schema: type, data: dict, prefix: str) -> list[str]:
    """Remove (in place) the keys of a stored config that the schema has since dropped; return their
    dotted names. Only for configs read back from checkpoints: a user's YAML keeps the strict check."""
    hints = typing.get_type_hints(schema)
    fields = {f.name for f in dataclasses.fields(schema) if f.init}
    dropped = []
    for key in list(data):
        if key not in fields:
            dropped.append(prefix + str(key))
            del data[key]
            continue
        sub = next(
            (t for t in (hints[key], *typing.get_args(hints[key])) if dataclasses.is_dataclass(t)), None
        )
        if sub is not None and isinstance(data[key], dict):
            dropped += _drop_removed_keys(sub, data[key], f"{prefix}{key}.")
    return dropped


def config_from_checkpoint(
    path: str | Path, schema: type[T], config_path: str | Path | None = None, overrides: Iterable[str] = ()
) -> tuple[T, list[tuple[str, Any, Any]]]:
    """Rebuild the config a checkpoint was trained with, then apply optional overrides.

    The stored config is the base; a YAML file (`config_path`, e.g. from -c) is merged over it and
    `overrides` (--set) come last. Returns the validated config and the differences from the stored
    one, which are also logged, so that an evaluation states what it changed.
    """
    from common.checkpoint import read_config_from_checkpoint

    stored = read_config_from_checkpoint(path)
    data = copy.deepcopy(stored)
    for key in _drop_removed_keys(schema, data, ""):
        log.warning("%s: config key %r no longer exists in this version: ignored", path, key)
    if config_path is not None:
        data = _deep_merge(data, _read_yaml(Path(config_path)))
    for item in overrides:
        _apply_override(data, item, schema)
    data = _expand_env(data, "")
    try:
        cfg = _build(schema, data, "")
    except ConfigError as exc:
        raise ConfigError(f"config stored in {path}: {exc}") from exc
    diffs = config_diff(stored, cfg)
    for key, old, new in diffs:
        log.info("config differs from %s: %s: %r -> %r", path, key, old, new)
    return _resolved(cfg), diffs
