"""Config loading: safe YAML, structured validation, dotted overrides, clear errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from omegaconf import MISSING

from cm3leon.core.config import ConfigError, load_config, load_yaml_file, save_config


@dataclass
class Optim:
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    warmup_steps: int = 10


@dataclass
class Run:
    name: str = MISSING
    optim: Optim = field(default_factory=Optim)
    tags: dict[str, str] = field(default_factory=dict)
    seed: int = 0
    log_dir: str = "runs/${name}"


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_loads_merges_and_resolves(tmp_path: Path) -> None:
    path = write(tmp_path, "name: tiny\noptim:\n  lr: 0.01\n")
    cfg = load_config(Run, path, ["optim.lr=3e-4", "optim.warmup_steps=5", "tags.team=vision"])
    assert isinstance(cfg, Run) and isinstance(cfg.optim, Optim)
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.optim.warmup_steps == 5
    assert cfg.tags == {"team": "vision"}
    assert cfg.log_dir == "runs/tiny"


def test_unknown_key_names_file_and_dotted_path(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\noptim:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"cfg\.yaml: key 'optim\.lrr'"):
        load_config(Run, path)


def test_unknown_override_key(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\n")
    with pytest.raises(ConfigError, match=r"optim\.warmup=3.*optim\.warmup"):
        load_config(Run, path, ["optim.warmup=3"])


def test_wrong_type_names_key_and_value(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\noptim:\n  warmup_steps: lots\n")
    with pytest.raises(ConfigError, match=r"key 'optim\.warmup_steps'.*'lots'"):
        load_config(Run, path)
    with pytest.raises(ConfigError, match=r"optim\.lr.*'fast'"):
        load_config(Run, write(tmp_path, "name: x\n", "b.yaml"), ["optim.lr=fast"])


def test_missing_required_value(tmp_path: Path) -> None:
    path = write(tmp_path, "seed: 3\n")
    with pytest.raises(ConfigError, match=r"cfg\.yaml: missing required value\(s\) for key\(s\): .*\bname\b"):
        load_config(Run, path)


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\noptim: [1, 2\nseed: 3\n")
    with pytest.raises(ConfigError, match=r"cfg\.yaml \(line \d+, column \d+\): invalid YAML"):
        load_config(Run, path)


def test_python_tags_are_rejected_and_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = write(tmp_path, f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(Run, path)
    assert not marker.exists()
    path2 = write(tmp_path, "name: !!python/name:os.system\n", "b.yaml")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_yaml_file(path2)


def test_no_eval_resolver(tmp_path: Path) -> None:
    path = write(tmp_path, "name: '${eval:1+1}'\n")
    with pytest.raises(ConfigError, match="eval"):
        load_config(Run, path)


def test_top_level_must_be_mapping_and_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(Run, write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match=r"nope\.yaml: config file not found"):
        load_config(Run, tmp_path / "nope.yaml")


def test_bad_override_syntax(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        load_config(Run, write(tmp_path, "name: x\n"), ["optim.lr"])


def test_save_round_trip(tmp_path: Path) -> None:
    cfg = load_config(Run, write(tmp_path, "name: a\nseed: 9\n"))
    out = save_config(cfg, tmp_path / "out" / "saved.yaml")
    again = load_config(Run, out)
    assert again == cfg


# ---------------------------------------------------------------- bounded parsing
def _alias_bomb(fan: int, depth: int) -> str:
    """``a_d`` is a list of ``fan`` aliases of ``a_{d-1}``: ``fan ** depth`` leaves once expanded."""
    lines = ["tags:", "  a0: &a0 [" + ", ".join(["x"] * fan) + "]"]
    for d in range(1, depth + 1):
        lines.append(f"  a{d}: &a{d} [" + ", ".join([f"*a{d - 1}"] * fan) + "]")
    return "name: bomb\n" + "\n".join(lines) + "\n"


@pytest.mark.parametrize("depth", [6, 9])
def test_alias_bomb_is_refused_before_it_is_built(tmp_path: Path, depth: int) -> None:
    import time
    import tracemalloc

    path = write(tmp_path, _alias_bomb(9, depth))
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ConfigError, match=r"cfg\.yaml: the YAML expands to [\d,]+ nodes"):
            load_config(Run, path)
        seconds = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 9 ** 6 = 531,441 leaves took 40 s and 457 MB through OmegaConf; 9 ** 9 would never end.
    assert seconds < 2.0
    assert peak < 20 * 2**20


def test_alias_bomb_in_an_override_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\n")
    bomb = "{" + _alias_bomb(9, 7).replace("\n", " ").split("tags: ", 1)[1] + "}"
    with pytest.raises(ConfigError, match="override"):
        load_config(Run, path, [f"tags={bomb}"])


def test_ordinary_aliases_and_merge_keys_still_load(tmp_path: Path) -> None:
    from cm3leon.core.config import parse_yaml

    assert parse_yaml("x: &a {p: 1}\ny: *a\nz: {<<: *a, q: 2}\n") == {
        "x": {"p": 1}, "y": {"p": 1}, "z": {"p": 1, "q": 2},
    }  # fmt: skip
    assert parse_yaml("") is None


def test_oversized_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\n" + "# padding\n" * 200)
    with pytest.raises(ConfigError, match=r"cfg\.yaml: config file is 2,008 bytes, more than the limit of 1,000"):
        load_yaml_file(path, max_bytes=1000)
    assert load_yaml_file(path)["name"] == "x"


def test_large_scalar_parses_fast_with_the_c_loader(tmp_path: Path) -> None:
    import time

    import yaml

    from cm3leon.core import config

    if yaml.__with_libyaml__:
        assert config._SafeLoader is yaml.CSafeLoader
    path = write(tmp_path, 'name: "' + "a" * 5_000_000 + '"\n')
    start = time.perf_counter()
    assert len(load_yaml_file(path)["name"]) == 5_000_000
    # The pure-Python scanner took ~5 s for this; libyaml ~0.2 s.
    assert time.perf_counter() - start < (2.0 if yaml.__with_libyaml__ else 30.0)
