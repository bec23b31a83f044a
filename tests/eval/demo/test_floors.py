"""The demo's seven floors (issue 15, "Floors for `cm3leon demo`"), each checked on summaries
built here: a pass and a fail case per floor, and "not run" for an evaluation that did not run."""

from __future__ import annotations

from typing import Any

import pytest

from cm3leon.eval.demo.claims import paper_claims
from cm3leon.eval.demo.summary import FLOOR_KEYS, _t2i_findings, figure_4, floors

# One row per matrix cell: (strategy, k) -> (object accuracy, its SE over prompts).
Cells = dict[tuple[str, int], tuple[float, float]]


def _rows(cells: Cells, chance: float = 0.08, strongest: float = 0.12) -> list[dict[str, Any]]:
    return [{"run": f"k={k}__strategy={s}", "k": float(k), "strategy": s, "object_acc": v, "object_acc_se": se,
             "colour_shape_acc": 0.9, "colour_shape_acc_se": 0.01, "baselines.chance.object_acc": chance,
             "baselines.chance.colour_shape_acc": 1 / 24, "baselines.shuffled.object_acc": strongest}
            for (s, k), (v, se) in cells.items()]  # fmt: skip


def _summary(cells: Cells | None = None, **evaluations: Any) -> dict[str, Any]:
    ev: dict[str, Any] = dict(evaluations)
    if cells is not None:
        rows = _rows(cells, **ev.pop("baselines", {}))
        ev["text_to_image"] = {"rows": rows, "findings": _t2i_findings(rows)}
    return {"evaluations": ev}


def _floor(summary: dict[str, Any], key: str) -> dict[str, Any]:
    return {f["key"]: f for f in floors(summary)}[key]


def test_all_seven_floors_are_listed_and_the_missing_ones_say_not_run() -> None:
    found = floors({"evaluations": {}})
    assert [f["key"] for f in found] == list(FLOOR_KEYS) and len(found) == 7
    for f in found:
        assert f["status"] == "not run" and f["passed"] is None and f["definition"] and f["reason"]


@pytest.mark.parametrize(("value", "chance", "status"), [
    (0.55, 0.10, "pass"),  # >= 0.5 and 5.5x chance
    (0.45, 0.05, "fail"),  # 9x chance but under 0.5
    (0.55, 0.12, "fail"),  # over 0.5 but 4.6x chance
])  # fmt: skip
def test_text_to_image_floor_is_absolute_and_five_times_chance(value: float, chance: float, status: str) -> None:
    summary = _summary({("top_p", 0): (value, 0.03), ("cd_k", 0): (0.2, 0.03)}, baselines={"chance": chance})
    check = _floor(summary, "text_to_image")
    assert check["status"] == status and check["passed"] is (status == "pass")
    assert check["value"] == value and check["se"] == 0.03 and check["baseline"] == chance
    assert check["baseline_name"].startswith("chance") and abs(check["ratio"] - value / chance) < 1e-9
    assert check["strongest_baseline"] == 0.12  # reported beside it, as information


def test_text_to_image_floor_is_the_fixed_run_never_the_best_of_the_matrix() -> None:
    # cd_k at k = 2 would pass; the headline run (top_p, k = 0) is not in the matrix: not run.
    summary = _summary({("cd_k", 0): (0.2, 0.03), ("cd_k", 2): (0.9, 0.03)})
    assert _floor(summary, "text_to_image")["status"] == "not run"
    # The old colour+shape measure (0.9, 21x its chance) is information, never a floor.
    summary = _summary({("top_p", 0): (0.2, 0.03)})
    assert [f["status"] for f in floors(summary) if f["key"] == "text_to_image"] == ["fail"]
    assert not [f for f in floors(summary) if "colour+shape" in f["name"]]


@pytest.mark.parametrize(("guided", "status"), [(0.30, "pass"), (0.27, "fail"), (0.10, "fail")])
def test_cfg_floor_is_two_standard_errors_of_the_difference(guided: float, status: str) -> None:
    # no guidance 0.2 ± 0.03, guidance ± 0.03: SE of the difference 0.0424; 2 SE = 0.085
    summary = _summary({("top_p", 0): (guided, 0.03), ("no_cfg", 0): (0.2, 0.03)})
    check = _floor(summary, "cfg")
    assert check["status"] == status and abs(check["se"] - 0.03 * 2**0.5) < 1e-9
    assert abs(check["ratio"] - (guided - 0.2) / check["se"]) < 1e-9 and check["baseline"] == 0.2
    assert _floor(_summary({("top_p", 0): (0.3, 0.03)}), "cfg")["status"] == "not run"  # no no_cfg run


def _tail(k0: float, k2: float, se: float = 0.02, other: float | None = None) -> dict[str, Any]:
    rows = [{"run": f"k={k}__strategy={s}", "k": float(k), "strategy": s, "entity_cell_acc": v,
             "entity_cell_acc_se": se} for s, k, v in (("top_p", 0, k0), ("top_p", 2, k2), ("cd_k", 0, k0),
                                                       ("cd_k", 2, other if other is not None else k2))]  # fmt: skip
    return {"tail_to_image": {"rows": rows, "findings": _t2i_findings(rows, ("entity_cell_acc",))}}


@pytest.mark.parametrize(("k2", "status"), [(0.33, "pass"), (0.27, "fail"), (0.1, "fail")])
def test_tail_floor_is_three_standard_errors_for_the_default_strategy(k2: float, status: str) -> None:
    check = _floor(_summary(**_tail(0.2, k2, other=0.9)), "tail_retrieval")  # cd_k's gain does not count
    assert check["status"] == status and abs(check["se"] - 0.02 * 2**0.5) < 1e-9
    assert check["value"] == k2 and check["baseline"] == 0.2 and "top_p" in check["name"]


@pytest.mark.parametrize(("cider", "status"), [(1.25, "pass"), (1.1, "fail")])
def test_captioning_floor_is_one_point_two_times_nearest_caption(cider: float, status: str) -> None:
    cap = {"metrics": {"cider_d": cider}, "baselines": {"nearest_caption": {"cider_d": 1.0}},
           "standard_errors": {"cider_d": 0.05}}  # fmt: skip
    check = _floor(_summary(captioning=cap), "captioning")
    assert check["status"] == status and check["ratio"] == cider and check["se"] == 0.05
    assert check["baseline_name"].startswith("nearest caption")


@pytest.mark.parametrize(("accuracy", "status"), [(47.5, "pass"), (45.0, "fail")])
def test_vqa_floor_is_the_per_type_prior_plus_ten_points(accuracy: float, status: str) -> None:
    # 45 % is 3.75x the majority answer (the old floor, 2x): not enough against the prior
    vqa = {"metrics": {"accuracy": accuracy}, "standard_errors": {"accuracy": 2.0},
           "baselines": {"majority": {"accuracy": 12.0, "answer": "no"},
                         "majority_per_question_type": {"accuracy": 37.5}}}  # fmt: skip
    check = _floor(_summary(vqa=vqa), "vqa")
    assert check["status"] == status and check["baseline"] == 37.5 and check["ratio"] == accuracy - 37.5
    assert check["ratio_unit"] == "points" and check["se"] == 2.0
    assert check["second_baseline"] == 12.0 and "no" in check["second_baseline_name"]


@pytest.mark.parametrize(("success", "status"), [(0.3, "pass"), (0.29, "fail")])
def test_editing_floor_is_absolute(success: float, status: str) -> None:
    edit = {"metrics": {"success": success}, "baselines": {"identity": {"success": 0.0}}}
    check = _floor(_summary(editing=edit), "editing")
    assert check["status"] == status and check["baseline"] == 0.0 and check["baseline_name"].startswith("identity")


def _context(own: float, none: float = 0.2, ceiling: float | None = 0.8) -> dict[str, Any]:
    rows = [{"run": f"context={c}", "context": c, "object_acc": v, "object_acc_se": 0.03}
            for c, v in (("none", none), ("own", own), ("other", 0.19))]  # fmt: skip
    ev: dict[str, Any] = {"in_context": {"rows": rows}}
    if ceiling is not None:
        ev["vq_ceiling"] = {"reconstructions": {"scores": {"object_acc": ceiling}}}
    return ev


def test_in_context_floor_needs_the_ceiling_and_three_standard_errors() -> None:
    assert _floor(_summary(**_context(0.7)), "in_context")["status"] == "pass"  # 0.7 >= 0.64, 11.8 SE
    assert _floor(_summary(**_context(0.6)), "in_context")["status"] == "fail"  # under 0.8 x 0.8
    assert _floor(_summary(**_context(0.3, ceiling=0.3)), "in_context")["status"] == "fail"  # 2.4 SE
    check = _floor(_summary(**_context(0.7, ceiling=None)), "in_context")
    assert check["status"] == "not run" and "VQ ceiling" in check["reason"]  # half a floor is not a floor
    assert _floor(_summary(**_context(0.7)), "in_context")["control"] == 0.19


def test_figure_4_reports_every_strategy_whatever_the_outcome() -> None:
    cells = {("top_p", 0): (0.3, 0.03), ("cd_k", 0): (0.2, 0.03), ("combined", 0): (0.4, 0.03),
             ("no_cfg", 0): (0.1, 0.03)}  # fmt: skip
    fig = figure_4(_summary(cells))
    assert fig["strategies"]["combined"] == {"value": 0.4, "se": 0.03}
    diffs = fig["differences"]
    assert abs(diffs["cd_k - top_p"]["delta"] + 0.1) < 1e-9 and diffs["cd_k - top_p"]["verdict"] == "worse"
    assert abs(diffs["combined - cd_k"]["delta"] - 0.2) < 1e-9
    fig = figure_4(_summary({("top_p", 0): (0.3, 0.03)}))
    assert fig["strategies"]["combined"] is None and diffs and fig["differences"]["combined - top_p"] is None


def test_claims_take_their_verdicts_from_the_floors() -> None:
    def verdict(summary: dict[str, Any], start: str) -> str:
        summary["floors"] = floors(summary)
        return next(c["verdict"] for c in paper_claims(summary) if c["claim"].startswith(start))

    cfg = "classifier-free guidance"
    assert verdict(_summary({("top_p", 0): (0.3, 0.03), ("no_cfg", 0): (0.2, 0.03)}), cfg) == "reproduced"
    assert verdict(_summary({("top_p", 0): (0.25, 0.03), ("no_cfg", 0): (0.2, 0.03)}), cfg) == "within noise"
    assert verdict(_summary({("top_p", 0): (0.1, 0.03), ("no_cfg", 0): (0.2, 0.03)}), cfg) == "contradicted"
    assert verdict(_summary({("top_p", 0): (0.3, 0.03)}), cfg) == "not measured"
    tail = "retrieval helps most on rare"
    assert verdict(_summary(**_tail(0.2, 0.33)), tail) == "reproduced"
    assert verdict(_summary(**_tail(0.2, 0.27)), tail) == "not met"  # > 2 SE, < 3 SE: short of the floor
    assert verdict(_summary(**_tail(0.2, 0.1)), tail) == "contradicted"
    vqa = {"metrics": {"accuracy": 45.0}, "baselines": {"majority": {"accuracy": 12.0},
                                                         "majority_per_question_type": {"accuracy": 37.5}}}  # fmt: skip
    assert verdict(_summary(vqa=vqa), "the fine-tuned model answers") == "not met"
