"""One SFT rendering path: a record renders the same through every command that writes it.

``cm3leon tasks mixture`` (the demo's path), ``cm3leon data prepare --task`` and
``cm3leon tasks render`` all go through ``cm3leon.core.task_render.render_task_records``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from cm3leon.core import plugin_manager
from cm3leon.core.cli import cli
from cm3leon.core.hookspecs import hookimpl
from cm3leon.core.registry import TaskSpec
from cm3leon.core.shards import iter_documents
from cm3leon.core.task_render import record_rng, render_task_records
from cm3leon.tasks.builtin.caption import CaptionTask
from cm3leon.tasks.cli import format_document

TEMPLATES = (
    "{caption} <break> {image}",
    "Describe the picture. {caption} <break> {image}",
    "Caption: {caption} <break> {image}",
    "What is shown here? {caption} <break> {image}",
)


def reader(path: str, *, split: str | None = None, skip_bad: bool = False, stats: dict | None = None,
           n: int = 8) -> Any:  # fmt: skip
    for i in range(n):
        if stats is not None:
            stats["records"] = stats.get("records", 0) + 1
        caption = "" if i == n - 1 else f"record {i}"  # the last one is bad
        yield {"id": f"r{i}", "image": Image.new("RGB", (4, 4), (30 * i, 7, 9)), "caption": caption}


class Plugin:
    @hookimpl
    def cm3leon_register_tasks(self) -> list[TaskSpec]:
        return [TaskSpec("multi", lambda: CaptionTask("multi", TEMPLATES), "four templates",
                         inputs=("image",), outputs=("text",), reader=reader)]  # fmt: skip


@pytest.fixture
def registries(monkeypatch: pytest.MonkeyPatch) -> Any:
    registries = plugin_manager.registries_with(Plugin())
    monkeypatch.setattr(plugin_manager, "get_registries", lambda: registries)
    return registries


def _run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_prepare_task_mixture_and_render_agree(tmp_path: Path, registries: Any) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    _run("data", "prepare", "--task", "multi", str(raw), "--out", str(tmp_path / "prepared"), "--seed", "5",
         "--skip-bad")  # fmt: skip
    prepared = {d.id: d for d in iter_documents(tmp_path / "prepared")}

    config = tmp_path / "mixture.yaml"
    config.write_text(yaml.safe_dump({
        "name": "one", "seed": 5, "skip_bad": True,
        "tasks": [{"task": "multi", "weight": 1.0, "sources": [{"path": str(raw)}]}],
        "output": {"path": str(tmp_path / "mixture"), "format": "documents"},
    }))  # fmt: skip
    _run("tasks", "mixture", str(config))
    mixed = {re.fullmatch(r"multi#(.+)#0", d.id).group(1): d for d in iter_documents(tmp_path / "mixture")}  # type: ignore[union-attr]

    assert sorted(prepared) == sorted(mixed) == [f"multi/r{i}" for i in range(7)]
    assert {prepared[k].meta["template"] for k in prepared} != {0}  # the seed matters: several templates drawn
    for key, doc in prepared.items():
        assert mixed[key].replace(id=doc.id) == doc, key

    shown = _run("tasks", "render", "multi", str(raw), "--index", "2", "--count", "2", "--seed", "5")
    expected = "".join(f"--- {prepared[k].id} (template {prepared[k].meta['template']})\n"
                       f"{format_document(prepared[k])}\n" for k in ("multi/r2", "multi/r3"))  # fmt: skip
    assert shown == expected


def test_record_rng_is_the_mixture_stream() -> None:
    """Record r of the mixture's task t, source s draws from default_rng([seed, t, s, r])."""
    task = CaptionTask("multi", TEMPLATES)
    records = list(reader("x", n=6))[:5]
    docs = list(render_task_records(task, records, name="multi", seed=3, where="x", stream=(2, 1)))
    for r, (record, doc) in enumerate(zip(records, docs, strict=True)):
        assert doc == task.render(record, rng=np.random.default_rng([3, 2, 1, r])).replace(meta=doc.meta)
        assert doc.meta["task"] == "multi"
    assert record_rng(3, (2, 1), 4).random() == np.random.default_rng([3, 2, 1, 4]).random()


def test_bad_record_names_origin_task_and_record() -> None:
    task = CaptionTask("multi", TEMPLATES)
    with pytest.raises(ValueError, match=r"^raw/x: task 'multi', record 'r3': "):
        list(render_task_records(task, list(reader("x", n=4)), name="multi", seed=0, where="raw/x"))
    stats: dict[str, int] = {}
    skipped: list[tuple[str, str]] = []
    docs = list(render_task_records(task, reader("x", n=4), name="multi", seed=0, where="raw/x", skip_bad=True,
                                    stats=stats, skipped=skipped))  # fmt: skip
    assert len(docs) == 3 and stats == {"skipped": 1, "skipped.render": 1}
    assert [w for w, _ in skipped] == ["raw/x: task 'multi', record 'r3'"]
    assert json.dumps(skipped)  # reasons are plain strings (the prepare report prints them)
