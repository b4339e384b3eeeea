"""common.config: YAML + overrides into frozen dataclasses, loud errors, saved config.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from common.config import ConfigError, build_parser, cli_overrides, config_to_dict, load_config, save_config
from common.engine import TrainConfig


@dataclass(frozen=True)
class ModelCfg:
    dims: tuple[int, ...] = (64, 128)
    num_classes: int = 14
    dropout: float = 0.1


@dataclass(frozen=True)
class DataCfg:
    root: str
    crop: tuple[int, int] = (480, 640)


@dataclass(frozen=True)
class Exp:
    data: DataCfg
    model: ModelCfg = ModelCfg()
    train: TrainConfig = field(default_factory=TrainConfig)
    weights: str | None = None


def _write(p: Path, text: str) -> Path:
    p.write_text(text)
    return p


def test_yaml_overrides_and_types(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "a.yaml",
        "data: {root: /d, crop: [240, 320]}\nmodel: {num_classes: 9}\ntrain: {lr: 6.0e-5, schedule: {name: warmup_poly}}\n",
    )
    cfg = load_config(
        f, Exp, ["train.max_steps=50", "model.dims=[8, 16, 32]", "weights=mscan_b.in1k", "train.lr=1e-3"]
    )
    assert cfg.data.crop == (240, 320) and isinstance(cfg.data.crop, tuple)
    assert cfg.model == ModelCfg(dims=(8, 16, 32), num_classes=9)
    assert cfg.train.max_steps == 50 and cfg.train.lr == 1e-3 and isinstance(cfg.train.lr, float)
    assert cfg.train.schedule.name == "warmup_poly" and cfg.train.schedule.power == 0.9
    assert cfg.weights == "mscan_b.in1k"


def test_unknown_key_names_path_and_suggestion(tmp_path: Path) -> None:
    f = _write(tmp_path / "a.yaml", "data: {root: x}\nmodel: {num_clases: 3}\n")
    with pytest.raises(ConfigError, match=r"model\.num_clases.*did you mean 'model\.num_classes'") as e:
        load_config(f, Exp)
    assert str(f) in str(e.value)
    with pytest.raises(ConfigError, match=r"train\.max_step.*did you mean 'train\.max_steps'"):
        load_config(None, Exp, ["data.root=x", "train.max_step=3"])


def test_wrong_type_and_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model\.num_classes: expected an integer"):
        load_config(None, Exp, ["data.root=x", "model.num_classes=abc"])
    with pytest.raises(ConfigError, match=r"data\.crop: expected 2 items"):
        load_config(None, Exp, ["data.root=x", "data.crop=[1,2,3]"])
    with pytest.raises(ConfigError, match=r"missing required key 'data\.root'"):
        load_config(None, Exp, ["data.crop=[1,2]"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml", Exp)
    with pytest.raises(ConfigError, match="optimizer"):
        load_config(None, Exp, ["data.root=x", "train.optimizer=rmsprop"])


def test_env_and_defaults_include(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path / "base.yaml", "data: {root: '${DATA_ROOT}/LL', crop: [1, 2]}\nmodel: {num_classes: 5}\n")
    f = _write(tmp_path / "child.yaml", "defaults: base.yaml\nmodel: {dropout: 0.0}\n")
    monkeypatch.setenv("DATA_ROOT", "/data")
    cfg = load_config(f, Exp)
    assert cfg.data.root == "/data/LL" and cfg.data.crop == (1, 2)
    assert cfg.model.num_classes == 5 and cfg.model.dropout == 0.0
    monkeypatch.delenv("DATA_ROOT")
    with pytest.raises(ConfigError, match=r"data\.root.*DATA_ROOT"):
        load_config(f, Exp)
    assert load_config(f, Exp, ["data.root=/x"]).data.root == "/x"  # override replaces the ${ENV}


def test_save_roundtrip(tmp_path: Path) -> None:
    cfg = load_config(None, Exp, ["data.root=r", "train.grad_clip=1.5"])
    path = save_config(cfg, tmp_path / "run")
    assert path.name == "config.yaml"
    assert yaml.safe_load(path.read_text()) == config_to_dict(cfg)
    assert load_config(path, Exp) == cfg


def test_parser() -> None:
    p = build_parser("demo")
    a = p.parse_args(["-c", "x.yaml", "-d", "0-3", "--set", "a.b=1", "--set", "c=2", "--resume", "-o", "out"])
    assert a.devices == "0-3" and a.overrides == ["a.b=1", "c=2"] and a.resume == "auto"
    assert cli_overrides(a) == ["a.b=1", "c=2", "train.out_dir=out"]
    assert p.parse_args(["--resume", "ck.pth"]).resume == "ck.pth"


def test_cli_paths_and_names_are_never_yaml_parsed(tmp_path: Path) -> None:
    p = build_parser("demo")
    a = p.parse_args(["-o", "runs/exp #2", "--set", "data.root=/data/a: b", "--set", "weights=null"])
    cfg = load_config(None, Exp, cli_overrides(a))
    assert cfg.train.out_dir == "runs/exp #2"  # YAML would have cut it at the comment: "runs/exp"
    assert cfg.data.root == "/data/a: b" and cfg.weights is None
    cfg = load_config(
        None, Exp, ["data.root=012", "weights='yes'", "train.grad_clip=null", "model.dims=[1, 2]"]
    )
    assert cfg.data.root == "012" and cfg.weights == "yes"  # strings stay strings, quotes are removed
    assert cfg.train.grad_clip is None and cfg.model.dims == (1, 2)  # other keys are still YAML


def test_parser_shared_flags_and_scripts_own_definitions() -> None:
    p = build_parser("demo")
    a = p.parse_args(["--overwrite", "--allow-config-change", "--checkpoint", "c.pth", "--report", "r.json"])
    assert a.overwrite and a.allow_config_change and a.checkpoint == Path("c.pth")
    assert a.report == Path("r.json") and not a.debug and a.resume is None
    p.add_argument(
        "--checkpoint", type=Path, required=True, help="a script's own flag replaces the shared one"
    )
    assert p.parse_args(["--checkpoint", "x.pth"]).checkpoint == Path("x.pth")


def test_config_from_checkpoint(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from common.checkpoint import CheckpointError, read_config_from_checkpoint, save_checkpoint
    from common.config import ABSENT, config_diff, config_from_checkpoint

    cfg = load_config(None, Exp, ["data.root=/d", "model.num_classes=9", "train.lr=0.5"])
    ck = tmp_path / "ck.pth"
    save_checkpoint({"config": config_to_dict(cfg), "model": {}}, ck)
    assert read_config_from_checkpoint(ck)["model"]["num_classes"] == 9
    again, diffs = config_from_checkpoint(ck, Exp)
    assert again == cfg and diffs == []
    extra = _write(tmp_path / "eval.yaml", "model: {dropout: 0.0}\n")
    with caplog.at_level("INFO", logger="common.config"):
        changed, diffs = config_from_checkpoint(ck, Exp, extra, ["data.root=/other"])
    assert changed.model.num_classes == 9 and changed.model.dropout == 0.0 and changed.data.root == "/other"
    assert diffs == [("data.root", "/d", "/other"), ("model.dropout", 0.1, 0.0)]
    assert "model.dropout: 0.1 -> 0.0" in caplog.text
    assert config_diff({"a": {"b": [1, 2]}}, {"a": {"b": (1, 2), "c": 3}}) == [("a.c", ABSENT, 3)]
    save_checkpoint({"model": {}}, tmp_path / "bare.pth")
    with pytest.raises(CheckpointError, match="bare.pth holds no config"):
        config_from_checkpoint(tmp_path / "bare.pth", Exp)


def test_checkpoint_config_with_a_key_this_version_removed_still_loads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A checkpoint written before a config key was deleted (e.g. smmcl's model.imagenet_weights) still
    rebuilds its config, with a warning; the same key in a user's YAML stays an error."""
    from common.checkpoint import save_checkpoint
    from common.config import config_from_checkpoint

    stored = config_to_dict(load_config(None, Exp, ["data.root=/d", "model.num_classes=9"]))
    stored["model"]["imagenet_weights"] = None
    stored["old_top_level"] = 1
    save_checkpoint({"config": stored, "model": {}}, tmp_path / "old.pth")
    with caplog.at_level("WARNING", logger="common.config"):
        cfg, _ = config_from_checkpoint(tmp_path / "old.pth", Exp)
    assert cfg.model.num_classes == 9
    assert "'model.imagenet_weights' no longer exists" in caplog.text and "'old_top_level'" in caplog.text
    with pytest.raises(ConfigError, match="unknown key 'model.imagenet_weights'"):
        load_config(_write(tmp_path / "u.yaml", "data: {root: /d}\nmodel: {imagenet_weights: null}\n"), Exp)


def test_literal_fields_list_their_choices_and_take_override_text_verbatim(tmp_path: Path) -> None:
    @dataclass(frozen=True)
    class Choice:
        ffl: Literal["shared", "separate_nets", "off"] = "shared"
        mode: Literal["a", "b"] | None = None

    assert load_config(None, Choice, ["ffl=off", "mode=null"]) == Choice(
        "off", None
    )  # "off" is not YAML's false
    assert load_config(_write(tmp_path / "c.yaml", "mode: b\n"), Choice).mode == "b"
    with pytest.raises(ConfigError) as err:
        load_config(None, Choice, ["ffl=shard"])
    assert "ffl" in str(err.value) and "['shared', 'separate_nets', 'off']" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="precision"):
        load_config(None, TrainConfig, ["precision=fp64"])
