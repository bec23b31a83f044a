"""Every shipped training config's header states the token budget its fields give.

Definitions (the header comments of ``configs/pretrain/*.yaml`` and ``configs/sft/*.yaml``
use them, and so does this test):

* **tokens per step** = row capacity = rows per step x ``data.seq_len``, padding included --
  what Table 3 / Table 4 call the batch: ``8M`` / ``2M`` = 8 / 2 x 2**20 tokens;
* **rows per step** = ``data.num_rows`` (summed over all GPUs, like ``global_batch_size``,
  so the same on any world size that divides it), or, with ``static_rows`` and no
  ``num_rows``, ``global_batch_size`` (one row per example slot on any world size);
* **total tokens** = steps x tokens per step, steps = ``max_duration`` in batches (the
  header's step count is the total divided by tokens per step, rounded either way).

A header states them as ``batch 2M tokens (512 rows of 4096 = 8 per GPU on 64 GPUs)`` and
``30B tokens = 3e10 / 2,097,152 = 14,306 steps``.  A config whose rows are fixed per step
(``num_rows`` or ``static_rows``) must state both; the CPU presets (rows as many as the
packing needs) state only their row length (``512-token rows``).  The paper-scale SFT
configs pack several examples per row and also state examples per step, the expected
fill and the expected share of examples dropped for lack of room, which
:func:`test_sft_packing_estimate_matches_its_basis` recomputes from the stated basis.
"""

from __future__ import annotations

import importlib
import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from cm3leon.core.config import load_config
from cm3leon.core.packing import pack
from cm3leon.core.train.config import TrainConfig
from cm3leon.tasks.mixture import balance_counts

ROOT = Path(__file__).resolve().parents[1]
TRAIN_CONFIGS = sorted(
    [*(ROOT / "configs/pretrain").glob("*.yaml"), *(ROOT / "configs/sft").glob("*.yaml")]
)
IDS = [str(p.relative_to(ROOT)) for p in TRAIN_CONFIGS]
MI = 2**20  # "8M" / "2M" batches are binary millions: 2M = 2,097,152 tokens

BATCH = re.compile(
    r"batch (?P<mi>\d+)M tokens \((?P<rows>[\d,]+) rows of (?P<seq>[\d,]+) = "
    r"(?P<per_gpu>[\d,]+) (?:rows )?per GPU on (?P<gpus>[\d,]+) GPUs\)"
)
TOTAL = re.compile(
    r"(?P<total>[\d.]+)(?P<unit>[BT]) tokens = (?P<sci>[\d.]+e\d+) / (?P<tps>[\d,]+) = "
    r"(?P<steps>[\d,]+) steps"
)
ROW_LEN = re.compile(r"(?P<seq>[\d,]+)-token rows")
WORLD = re.compile(r"--world_size (?P<w>\d+)")
SINGLE_NODE = re.compile(
    r"^\s*(?:Single node:\s*)?composer -n (?P<n>\d+) -m cm3leon\.core\.train \S+(?P<overrides>(?: \S+=\S+)*)\s*$"
)
EXAMPLES = re.compile(
    r"every step takes (?P<examples>[\d,]+) examples \((?P<per_gpu>\d+) per GPU\) and each "
    r"GPU packs its (?P<per_gpu2>\d+) into its (?P<rows>\d+) rows"
)
FILL = re.compile(
    r"Expected fill (?P<fill>\d+)% of the (?P<mi>\d+)M \(mean (?P<mean>[\d,]+) tokens x "
    r"(?P<examples>[\d,]+) examples"
)
LENGTHS = re.compile(
    r"(?P<share>\d+)% two-image examples \((?:[^()]*= )?~(?P<two>[\d,]+) tokens\) and "
    r"(?P<share1>\d+)% one-image ones \((?:[^()]*= )?~(?P<one>[\d,]+)"
)
DROPS = re.compile(r"expected (?P<drop>[\d.]+)% of the examples")
ALTERNATIVE = re.compile(r"(?P<k>\d+) per GPU would fill (?P<fill>\d+)% but drop (?P<drop>[\d.]+)%")

# Table 5's "# Examples" column, by the task names of configs/mixtures/table5.yaml.
TABLE5_EXAMPLES = {
    "instructpix2pix": 127_000,
    "ocr": 300_000,
    "object_detection": 3_000_000,
    "edge_to_image": 1_000_000,
    "seg_to_image": 1_000_000,
    "hed_to_image": 1_000_000,
    "pose_to_image": 142_000,
    "depth_to_image": 1_000_000,
    "norm_to_image": 1_000_000,
    "scribble_to_image": 500_000,
    "coco_captioning": 591_000,
    "flickr30k": 144_000,
    "image_paragraph": 14_000,
    "localized_narratives": 164_000,
    "vqa2": 1_300_000,
    "vizwiz": 92_000,
    "okvqa": 26_000,
    "scienceqa": 6_000,
}


def _num(text: str) -> int:
    return int(text.replace(",", ""))


def _header(path: Path) -> tuple[list[str], str]:
    """The leading comment lines, and their text joined into one line (for the regexes)."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#"))
    return lines, " ".join(" ".join(lines).split())


def _load(path: Path, overrides: list[str] | None = None) -> TrainConfig:
    return load_config(TrainConfig, path, overrides or [])


def _steps(cfg: TrainConfig) -> int:
    assert cfg.max_duration.endswith("ba"), (
        f"max_duration {cfg.max_duration!r}: budgets are stated in steps (ba)"
    )
    return int(cfg.max_duration[:-2])


def _rows_per_step(cfg: TrainConfig, gpus: int) -> int | None:
    """Rows per optimizer step summed over ``gpus`` ranks; ``None`` when the packing decides."""
    if cfg.data.num_rows is not None:
        assert cfg.data.num_rows % gpus == 0, "num_rows must split evenly over the GPUs"
        return cfg.data.num_rows
    if cfg.data.static_rows:
        assert cfg.data.global_batch_size % gpus == 0, (
            "static_rows needs global_batch_size divisible by the GPUs"
        )
        return cfg.data.global_batch_size
    return None


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=IDS)
def test_header_token_budget_matches_the_fields(path: Path) -> None:
    cfg = _load(path)
    _, header = _header(path)
    for m in ROW_LEN.finditer(header):
        assert _num(m["seq"]) == cfg.data.seq_len, (
            f"{path.name}: header says {m[0]!r}, seq_len is {cfg.data.seq_len}"
        )
    fixed_rows = cfg.data.num_rows is not None or cfg.data.static_rows
    batch, total = BATCH.search(header), TOTAL.search(header)
    if not fixed_rows and batch is None and total is None:
        return  # CPU preset: rows per step depend on the packing; nothing more is claimed
    assert batch, (
        f"{path.name}: header must state 'batch NM tokens (R rows of T = P per GPU on G GPUs)'"
    )
    assert total, f"{path.name}: header must state 'XT tokens = Xe12 / TOKENS_PER_STEP = S steps'"
    gpus, per_gpu, rows = _num(batch["gpus"]), _num(batch["per_gpu"]), _num(batch["rows"])
    assert _num(batch["seq"]) == cfg.data.seq_len, (
        f"{path.name}: {batch[0]!r} vs seq_len {cfg.data.seq_len}"
    )
    assert per_gpu * gpus == rows, f"{path.name}: {batch[0]!r}: {per_gpu} x {gpus} != {rows}"
    assert _rows_per_step(cfg, gpus) == rows, (
        f"{path.name}: the fields give {_rows_per_step(cfg, gpus)} rows on {gpus} GPUs, the header {rows}"
    )
    if cfg.data.num_rows is not None:
        assert cfg.data.num_rows == per_gpu * gpus, (
            f"{path.name}: data.num_rows={cfg.data.num_rows}, header {per_gpu} per GPU on {gpus}"
        )
    for m in WORLD.finditer(header):
        assert int(m["w"]) == gpus, (
            f"{path.name}: launches --world_size {m['w']}, budget is for {gpus} GPUs"
        )
    tokens_per_step = rows * cfg.data.seq_len
    assert _num(batch["mi"]) * MI == tokens_per_step, (
        f"{path.name}: 'batch {batch['mi']}M tokens' != {tokens_per_step:,}"
    )
    assert _num(total["tps"]) == tokens_per_step, (
        f"{path.name}: {total[0]!r} divides by {total['tps']}, not {tokens_per_step:,}"
    )
    stated_total = float(total["total"]) * (1e12 if total["unit"] == "T" else 1e9)
    assert math.isclose(float(total["sci"]), stated_total), f"{path.name}: {total[0]!r}"
    steps = _steps(cfg)
    assert _num(total["steps"]) == steps, (
        f"{path.name}: header says {total['steps']} steps, max_duration is {steps}ba"
    )
    assert steps in (
        math.floor(stated_total / tokens_per_step),
        math.ceil(stated_total / tokens_per_step),
    ), (
        f"{path.name}: {steps} steps x {tokens_per_step:,} tokens = {steps * tokens_per_step:.4g}, not {stated_total:.4g}"
    )


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=IDS)
def test_single_node_command_keeps_the_budget(path: Path) -> None:
    """The single-node line keeps the header's rows per step (and its overrides, if any, too)."""
    lines, header = _header(path)
    batch = BATCH.search(header)
    single = [m for m in map(SINGLE_NODE.match, lines) if m and "--world_size" not in m[0]]
    if batch is None or not single:
        return
    n, overrides = int(single[0]["n"]), single[0]["overrides"].split()
    cfg = _load(path, overrides)
    assert cfg.data.global_batch_size % n == 0, (
        f"{path.name}: {cfg.data.global_batch_size} examples on {n} GPUs"
    )
    assert _rows_per_step(cfg, n) == _num(batch["rows"]), (
        f"{path.name}: single node ({n} GPUs, overrides {overrides}) gives {_rows_per_step(cfg, n)} rows per step, "
        f"the header's budget is {batch['rows']}"
    )


def _two_image_share() -> float:
    """Share of two-image examples in configs/mixtures/table5.yaml balanced over Table 5's counts."""
    tasks = [
        t["task"]
        for t in yaml.safe_load((ROOT / "configs/mixtures/table5.yaml").read_text())["tasks"]
    ]
    assert sorted(tasks) == sorted(TABLE5_EXAMPLES)
    images = {}
    for name in tasks:
        templates = importlib.import_module(f"cm3leon.tasks.builtin.{name}").TEMPLATES
        per_template = {
            sum(bool(re.fullmatch(r"\{[^{}]*image[^{}]*\}", s.strip())) for s in t.split("<break>"))
            for t in templates
        }
        assert len(per_template) == 1, f"{name}: templates hold different numbers of images"
        images[name] = per_template.pop()
    _, counts = balance_counts(
        TABLE5_EXAMPLES, dict.fromkeys(TABLE5_EXAMPLES, 1.0), max_upsample=3.0, min_downsample=0.3
    )
    return sum(c for name, c in counts.items() if images[name] == 2) / sum(counts.values())


def _expected_drop(per_gpu: int, rows: int, share: float) -> float:
    """Expected share of examples first-fit decreasing drops for lack of room.

    Rows hold one two-image example (plus one one-image example) or three one-image ones
    (:func:`test_packing_facts_behind_the_estimate`), so with ``n`` two-image examples among
    ``per_gpu``: ``max(0, n - rows)`` two-image ones and whatever one-image ones exceed the
    room left are dropped.
    """
    dropped = 0.0
    for n in range(per_gpu + 1):
        placed = min(n, rows)
        room = placed + 3 * (rows - placed)
        lost = (n - placed) + max(0, per_gpu - n - room)
        dropped += lost * math.comb(per_gpu, n) * share**n * (1 - share) ** (per_gpu - n)
    return dropped / per_gpu


def test_packing_facts_behind_the_estimate() -> None:
    """The row-sharing rules the SFT headers rely on, checked with the real packer."""

    def rows(*lengths: int) -> int:
        return pack([np.full(n, 5) for n in lengths], 4096, strategy="ffd").input_ids.shape[0]

    two_min, one_min = 1 + 2 * 1024 + 4, 1 + 1024 + 2  # <eos> + images + <break>s, no text
    assert rows(two_min, two_min) == 2  # two two-image examples never share a row
    assert rows(*[one_min] * 4) == 2  # nor four one-image ones
    assert rows(2078, 1080) == 1 and rows(1080, 1080, 1080) == 1  # the typical ones do share
    assert rows(*[2078] * 3, *[1080] * 5) == 4  # FFD: a one-image example beside each two-image one


SFT_PAPER = sorted((ROOT / "configs/sft").glob("*.yaml"))


@pytest.mark.parametrize("path", SFT_PAPER, ids=[str(p.relative_to(ROOT)) for p in SFT_PAPER])
def test_sft_packing_estimate_matches_its_basis(path: Path) -> None:
    cfg = _load(path)
    if not cfg.fsdp.enabled:
        return  # CPU presets: rows as many as the packing needs
    _, header = _header(path)
    batch, examples, fill = BATCH.search(header), EXAMPLES.search(header), FILL.search(header)
    assert batch and examples and fill, (
        f"{path.name}: header must state examples per step and the expected fill"
    )
    gpus, rows = _num(batch["gpus"]), _num(batch["rows"])
    per_gpu = int(examples["per_gpu"])
    stated = {_num(examples["examples"]), per_gpu * gpus, _num(fill["examples"])}
    assert stated == {cfg.data.global_batch_size}, (
        f"{path.name}: header states {sorted(stated)} examples per step, data.global_batch_size is "
        f"{cfg.data.global_batch_size}"
    )
    assert int(examples["per_gpu2"]) == per_gpu, f"{path.name}: {examples[0]!r}"
    rows_per_gpu = cfg.data.num_rows // gpus
    assert int(examples["rows"]) == rows_per_gpu, (
        f"{path.name}: {examples[0]!r} vs data.num_rows={cfg.data.num_rows} on {gpus} GPUs"
    )
    assert cfg.data.global_batch_size > rows, (
        f"{path.name}: {cfg.data.global_batch_size} examples in {rows} rows is no packing"
    )
    capacity = rows * cfg.data.seq_len
    mean = _num(fill["mean"])
    assert int(fill["fill"]) == round(100 * per_gpu * gpus * mean / capacity), (
        f"{path.name}: {fill[0]!r}"
    )
    lengths = LENGTHS.search(header)
    assert lengths, f"{path.name}: header must state the two-image share and lengths"
    share = _two_image_share()
    assert int(lengths["share"]) == round(100 * share) and int(lengths["share1"]) == round(
        100 * (1 - share)
    )
    assert math.isclose(
        mean, share * _num(lengths["two"]) + (1 - share) * _num(lengths["one"]), rel_tol=0.005
    )
    drop = DROPS.search(header)
    assert drop and float(drop["drop"]) == round(
        100 * _expected_drop(per_gpu, rows_per_gpu, share), 1
    )
    alt = ALTERNATIVE.search(header)
    assert alt and int(alt["k"]) == per_gpu + 1
    assert int(alt["fill"]) == round(100 * (per_gpu + 1) * gpus * mean / capacity)
    assert float(alt["drop"]) == round(
        100 * _expected_drop(per_gpu + 1, rows_per_gpu, share), 1
    )
