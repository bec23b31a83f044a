"""The ``oracle`` generator runner: ``generate``'s output layout, answers chosen by the test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cm3leon.core.hookspecs import hookimpl
from cm3leon.core.io import atomic_directory
from cm3leon.core.registry import RunnerSpec

#: prompt id -> generated text (str) or image file (Path), read by the oracle runner.
ORACLE: dict[str, Any] = {}
#: the prompt lines the oracle received, in order.
SEEN: list[dict[str, Any]] = []


def oracle_generate(cfg: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """A generator runner returning :data:`ORACLE`'s answer as every candidate."""
    from PIL import Image

    lines = [json.loads(x) for x in Path(cfg["prompts"]).read_text().splitlines() if x.strip()]
    SEEN.extend(lines)
    rows, manifest = [], []
    with atomic_directory(Path(run_dir) / "samples", overwrite=True) as tmp:
        for entry in lines:
            pid, answer = entry["id"], ORACLE[entry["id"]]
            if isinstance(answer, Path):
                rels = [f"images/{pid}/{r}.png" for r in range(cfg["num_candidates"])]
                for rel in rels:
                    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                    with Image.open(answer) as im:
                        im.convert("RGB").save(tmp / rel)
                cands = [{"rank": r, "image": rel, "text": None} for r, rel in enumerate(rels)]
                manifest.append({"id": pid, "text": entry.get("text", "x"), "images": rels})
            else:
                cands = [{"rank": 0, "text": answer}]
            kind = "image" if isinstance(answer, Path) else "text"
            rows.append({"id": pid, "output": kind, "candidates": cands})
        (tmp / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        if manifest:
            (tmp / "manifest.json").write_text(json.dumps({"prompts": manifest}))
    return {"num_prompts": len(rows)}


class OraclePlugin:
    @staticmethod
    @hookimpl
    def cm3leon_register_runners():
        return [RunnerSpec("oracle", oracle_generate, "answers from ORACLE")]
