"""The paper's claims against this run: the report's "paper claim / this run / verdict" table.

Every row is read off what :mod:`cm3leon.eval.demo.summary` already computed -- the
findings (differences with their standard errors and ``better``/``worse``/``unclear``
verdicts), the floors (pass/fail) and the RA-vs-plain comparison -- nothing is recomputed
or re-thresholded here.  A claim whose measurement did not run says ``not measured``.

Verdicts:

* ``reproduced``: the effect the paper reports, beyond two standard errors of the difference
  (or the floor met);
* ``within noise``: the difference is inside two standard errors -- neither shown nor refuted;
* ``contradicted``: the opposite effect, beyond two standard errors;
* ``not met``: a floor missed (the claim is "the model can do X at least this well");
* ``not measured``: this run has no such measurement (a stage off, or no standard errors).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cm3leon.eval.demo.summary import T2I_METRIC, TAIL_METRIC, TAIL_STRATEGY

__all__ = ["VERDICTS", "paper_claims"]

VERDICTS = ("reproduced", "within noise", "contradicted", "not met", "not measured")
_FROM_DIFFERENCE = {"better": "reproduced", "unclear": "within noise", "worse": "contradicted"}


def _diff_text(entry: dict[str, Any] | None, a: str, b: str, what: str) -> str:
    """``object accuracy 0.200 (k0) -> 0.250 (k2): +0.050 ± 0.032 SE``."""
    if not entry:
        return "not measured"
    text = f"{what} {entry[a]:.3f} ({a}) → {entry[b]:.3f} ({b}): {entry['delta']:+.3f}"
    kind = " (unpaired)" if entry.get("se_kind") == "unpaired" else ""  # else paired over the prompts
    return text + (f" ± {entry['se']:.3f} SE{kind}" if "se" in entry else " (no standard error)")


def _from_difference(entry: dict[str, Any] | None, *, competitive: bool = False) -> str:
    """The verdict of a finding; ``competitive``: the claim is "not worse" (CD-K vs top-p)."""
    if not entry or "verdict" not in entry:
        return "not measured"
    if competitive:
        return "contradicted" if entry["verdict"] == "worse" else "reproduced"
    return _FROM_DIFFERENCE[entry["verdict"]]


def _floor(summary: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The floor ``key`` of :func:`cm3leon.eval.demo.summary.floors` (None: not in the summary)."""
    return next((c for c in summary.get("floors", []) if c.get("key") == key), None)


def _ran(check: dict[str, Any] | None) -> bool:
    return check is not None and check.get("status") in ("pass", "fail")


def _floor_text(check: dict[str, Any] | None) -> str:
    if not _ran(check):
        return "not measured" + (f" ({check['reason']})" if check and check.get("reason") else "")
    assert check is not None
    se = f" ± {check['se']:.3g} SE" if check.get("se") is not None else ""
    base = f"{check['baseline']:.3g}" if check.get("baseline") is not None else "–"
    ratio, unit = check.get("ratio"), check.get("ratio_unit")
    measure = "" if ratio is None else f"; {ratio:.2f}x" if unit == "x" else f"; {ratio:+.2f} {unit}"
    return f"{check['value']:.3g}{se} vs {check['baseline_name']} {base}{measure} (floor: {check['definition']})"


def _floor_verdict(check: dict[str, Any] | None, finding: dict[str, Any] | None = None) -> str:
    """``reproduced`` when the floor is met; when it is missed, the finding's own verdict
    (same difference, same SE) tells ``contradicted`` (worse beyond 2 SE) and ``within noise``
    from ``not met`` (better, but short of the floor)."""
    if not _ran(check):
        return "not measured"
    assert check is not None
    if check["passed"]:
        return "reproduced"
    verdict = (finding or {}).get("verdict")
    return {"worse": "contradicted", "unclear": "within noise"}.get(verdict or "", "not met")


def _t2i_claims(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Table 1 (retrieval k), Figure 4 (CFG, CD-K, combined) on the head prompts at k = 0."""
    findings = summary.get("evaluations", {}).get("text_to_image", {}).get("findings", {})
    retrieval = (findings.get("retrieval", {}).get("top_p") or {}).get(T2I_METRIC)
    k_max = next((k for k in (retrieval or {}) if k.startswith("k") and k != "k0"), "k2")
    cfg, cfg_floor = (findings.get("cfg", {}).get("k0") or {}).get(T2I_METRIC), _floor(summary, "cfg")
    decoding = findings.get("decoding", {}).get("k0") or {}
    cd_k, combined = (decoding.get("cd_k") or {}).get(T2I_METRIC), (decoding.get("combined") or {}).get(T2I_METRIC)
    acc = "object accuracy"
    return [
        {"paper": "Table 1", "claim": "retrieved documents in context improve zero-shot text-to-image "
                                      "(k = 1, 2 beat k = 0)",
         "this_run": _diff_text(retrieval, "k0", k_max, f"{acc}, CFG + top-p,"), "verdict": _from_difference(retrieval)},
        {"paper": "Figure 4", "claim": "classifier-free guidance improves on unguided sampling",
         "this_run": _diff_text(cfg, "no_cfg", "cfg", f"{acc} at k = 0,") + _in_ses(cfg_floor),
         "verdict": _floor_verdict(cfg_floor, cfg)},
        {"paper": "Figure 4", "claim": "CD-K is competitive with CFG top-p sampling",
         "this_run": _diff_text(cd_k, "top_p", "cd_k", f"{acc} at k = 0,"),
         "verdict": _from_difference(cd_k, competitive=True)},
        {"paper": "Figure 4", "claim": "top-p and CD-K candidates are complementary: combined beats top-p alone",
         "this_run": _diff_text(combined, "top_p", "combined", f"{acc} at k = 0,"),
         "verdict": _from_difference(combined)},
    ]  # fmt: skip


def _in_ses(check: dict[str, Any] | None) -> str:
    """`` = 2.4 SE (floor: ...)``: a difference floor's measure, for the claim's text."""
    if not _ran(check) or check is None or check.get("ratio") is None:
        return ""
    return f" = {check['ratio']:.1f} SE (floor: {check['definition']})"


def _tail_claim(summary: dict[str, Any]) -> dict[str, Any]:
    check = _floor(summary, "tail_retrieval")
    tail = summary.get("evaluations", {}).get("tail_to_image", {}).get("findings", {})
    entry = (tail.get("retrieval", {}).get(TAIL_STRATEGY) or {}).get(TAIL_METRIC)
    text = _diff_text(entry, "k0", next((k for k in entry or {} if k.startswith("k") and k != "k0"), "k2"),
                      "entity mosaic cells right,")  # fmt: skip
    return {"paper": "§2.1 / Table 1", "claim": "retrieval helps most on rare (long-tail) entities",
            "this_run": text + _in_ses(check), "verdict": _floor_verdict(check, entry)}  # fmt: skip


def _in_context_claim(summary: dict[str, Any]) -> dict[str, Any]:
    check = _floor(summary, "in_context")
    text = _floor_text(check)
    if _ran(check) and check is not None:
        rounded = {k: f"{v:.3f}" if isinstance(v, float) else v for k, v in check.items()}
        text += f"; control (another document) {rounded.get('control')}; VQ ceiling {rounded.get('ceiling')}"
    return {"paper": "Table 1's mechanism", "claim": "the model uses what it retrieves (the target itself in "
            "context draws it near the VQ ceiling)", "this_run": text, "verdict": _floor_verdict(check)}  # fmt: skip


def _sft_claims(summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key, claim in (("captioning", "the fine-tuned model captions images better than a nearest-caption "
                                      "lookup (Table 2)"),
                       ("vqa", "the fine-tuned model answers questions about images (Table 2)"),
                       ("editing", "the fine-tuned model edits images as instructed (§4.1)")):  # fmt: skip
        check = _floor(summary, key)
        rows.append({"paper": "§4 SFT", "claim": claim, "this_run": _floor_text(check),
                     "verdict": _floor_verdict(check)})  # fmt: skip
    return rows


def _ra_vs_plain_claims(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Retrieval-augmented vs plain pretraining at equal compute (only when it ran)."""
    found = summary.get("ra_vs_plain")
    if not found:
        return []
    compute = found.get("compute", {})
    rows = []
    for c in found.get("comparisons", []):
        what = ("with its retrieval (k = {k})" if c["ra_k"] else "without retrieval (k = 0)").format(k=c["ra_k"])
        text = (f"{c['metric']} ({c['prompts']} prompts, {c['strategy']}): augmented {what} "
                f"{c['retrieval_augmented']:.3f} vs plain {c['plain']:.3f}: {c['delta']:+.3f}"
                + (f" ± {c['se']:.3f} SE" if "se" in c else ""))  # fmt: skip
        verdict = _from_difference(c)
        if compute.get("equal") is not True:
            verdict = "not measured"
            text += " (the two runs' token counts differ by more than one step: not equal compute)"
        rows.append({"paper": "§1 / RA-CM3", "claim": "retrieval-augmented pretraining beats plain pretraining "
                     "at equal compute", "this_run": text, "verdict": verdict})  # fmt: skip
    return rows


_BUILDERS: tuple[Callable[[dict[str, Any]], Any], ...] = (
    _t2i_claims, _tail_claim, _in_context_claim, _sft_claims, _ra_vs_plain_claims,
)  # fmt: skip


def paper_claims(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """``[{paper, claim, this_run, verdict}]`` read off ``summary``'s findings and floors."""
    rows: list[dict[str, Any]] = []
    for build in _BUILDERS:
        built = build(summary)
        rows.extend(built if isinstance(built, list) else [built])
    return rows
