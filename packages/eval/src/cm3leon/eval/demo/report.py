"""``<out>/report.html``: one self-contained page with every number, figure and artefact.

Figures (loss curves, ablation plots, sample grids, the VQ reconstruction grid) are
embedded as PNG data URIs, so the page renders on its own; every artefact (stage logs,
configs, exports, shards, result files) is a link *relative to the run directory*, so the
directory can be moved or served as is.  Numbers come from :func:`collect_summary`, which
is also written to ``<out>/summary.json``.
"""

from __future__ import annotations

import base64
import html
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cm3leon.core.io import atomic_write_json, atomic_write_text
from cm3leon.eval.demo.stages import Layout, Stage
from cm3leon.eval.demo.summary import T2I_METRIC, T2I_OLD_METRIC, collect_summary

__all__ = ["render_report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;
 color:#222;line-height:1.45;padding:0 1em}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0 1.2em}td,th{border:1px solid #ccc;padding:.25em .6em;
 text-align:left;vertical-align:top;font-size:.92em}th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#0a7d2c;font-weight:600}.fail{color:#b3261e;font-weight:600}.noise{color:#8a6d00;font-weight:600}
.muted{color:#777;font-size:.9em}code{background:#f5f5f5;padding:0 .25em;border-radius:3px;font-size:.88em}
img.fig{max-width:100%;border:1px solid #ddd;margin:.3em 0}.figs{display:flex;flex-wrap:wrap;gap:1em}
.figs figure{margin:0;max-width:520px}figcaption{font-size:.85em;color:#555}
details{margin:.3em 0}summary{cursor:pointer}
"""


class _Page:
    """Small HTML builder: escaped text, relative links, embedded PNGs."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.parts: list[str] = []

    def add(self, markup: str) -> None:
        self.parts.append(markup)

    def link(self, path: str | Path, label: str | None = None) -> str:
        p = Path(path)
        rel = os.path.relpath(p, self.out) if p.is_absolute() else str(p)
        text = label if label is not None else rel
        if not (p if p.is_absolute() else self.out / p).exists():
            return f'<span class="muted">{html.escape(text)} (missing)</span>'
        return f'<a href="{html.escape(rel)}">{html.escape(text)}</a>'

    def image(self, path: str | Path | None, caption: str = "") -> str:
        if path is None or not Path(path).is_file():
            return ""
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        cap = (
            f"<figcaption>{html.escape(caption)} — {self.link(path, 'file')}</figcaption>"
            if caption
            else ""
        )
        return f'<figure><img class="fig" src="data:image/png;base64,{data}" alt="{html.escape(caption)}">{cap}</figure>'

    def table(
        self, header: Sequence[str], rows: Sequence[Sequence[Any]], raw: bool = False
    ) -> None:
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = []
        for row in rows:
            cells = []
            for value in row:
                if isinstance(value, float) or value is None:  # None: not measured
                    cells.append(f'<td class="num">{_fmt(value)}</td>')
                else:
                    cells.append(f"<td>{value if raw else html.escape(str(value))}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        self.add(f"<table><tr>{head}</tr>{''.join(body)}</table>")

    def html(self, title: str) -> str:
        return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
                f"</title><style>{_CSS}</style></head><body>{''.join(self.parts)}</body></html>\n")  # fmt: skip


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)


_STATUS = {"pass": '<span class="pass">yes</span>', "fail": '<span class="fail">no</span>',
           "not run": '<span class="muted">not run</span>'}  # fmt: skip


def _floor_row(c: dict[str, Any]) -> list[str]:
    """One floor of :func:`cm3leon.eval.demo.summary.floors` as escaped table cells."""
    esc = html.escape
    if c["status"] == "not run":
        return [esc(c["name"]), f'<span class="muted">{esc(c.get("reason") or "")}</span>', "–", "–",
                esc(c["definition"]), _STATUS["not run"]]  # fmt: skip
    value = _fmt(c["value"]) + (f" ± {_fmt(c['se'], 2)} SE" if c.get("se") is not None else "")
    if c.get("se_kind"):  # a difference's SE: paired over the same prompts, or not (and why)
        value += f" ({esc(c['se_kind'])}" + (f", n = {c['n']}" if c.get("n") else "") + ")"
        value += f'<br><span class="muted">{esc(c["se_note"])}</span>' if c.get("se_note") else ""
    base = f"{_fmt(c['baseline'])} ({esc(c['baseline_name'])})"
    info = [("strongest_baseline", "strongest baseline, for information"), ("second_baseline", None),
            ("control", None), ("ceiling", "VQ ceiling")]  # fmt: skip
    for key, label in info:
        if c.get(key) is not None:
            base += f"<br>{_fmt(c[key])} ({esc(c.get(f'{key}_name') or label or key)})"
    unit = c.get("ratio_unit")
    measure = "–" if c.get("ratio") is None else (
        f"{_fmt(c['ratio'], 3)}×" if unit == "x" else f"{c['ratio']:+.3g} {esc(unit or '')}")  # fmt: skip
    return [esc(c["name"]), value, base, measure, esc(c["definition"]), _STATUS[c["status"]]]


def _figure_4(page: _Page, fig: dict[str, Any] | None) -> None:
    """Figure 4 at k = 0 whatever the outcome: each strategy ± SE and each pair's difference."""
    if not fig:
        return
    page.add("<h3>Figure 4: CD-K vs top-p vs the two combined (k = 0, object accuracy)</h3>")
    names = {"top_p": "CFG + top-p", "cd_k": "CD-K", "combined": "combined (half top-p, half CD-K)"}
    page.table(["strategy", "object accuracy", "SE"],
               [[names.get(s, s), *((v["value"], v["se"]) if v else ("not run", None))]
                for s, v in fig["strategies"].items()])  # fmt: skip
    page.table(["difference", "value", "SE of the difference", "SE kind", "verdict (2 SE)"],
               [[pair, *((d["delta"], d.get("se"), d.get("se_kind", "–"), d.get("verdict", "–")) if d
                         else ("not run", None, "–", "–"))]
                for pair, d in fig["differences"].items()])  # fmt: skip


def _floors(page: _Page, summary: dict[str, Any]) -> None:
    page.add("<h2>Headline results</h2><p class=\"muted\">The demo's seven floors (issue 15); a floor "
             "whose evaluation did not run says so. SE: standard error over prompts of the value or, for the "
             "floors counted in SEs, of the difference: paired (the SE of the per-prompt differences over "
             "the n prompts both runs scored), or unpaired, sqrt(SE_a² + SE_b²), only where the two runs' "
             "prompts differ.</p>")  # fmt: skip
    rows = [_floor_row(c) for c in summary["floors"]]
    if rows:
        page.table(["floor", "value", "baseline", "measure", "floor definition", "met"], rows, raw=True)
    _figure_4(page, summary.get("figure_4"))
    ev = summary["evaluations"]
    extra = []
    edit = ev.get("editing")
    if edit:
        for key, value in edit.get("metrics", {}).items():
            extra.append([f"editing {key}", _fmt(_num(value))])
    old = next((c.get("old_measure") for c in summary["floors"] if c.get("old_measure")), None)
    if old and old.get("value") is not None:
        extra.append([f"text-to-image {old['name']}, k = 0, CFG + top-p (chance {_fmt(old.get('chance'))})",
                      _fmt(old["value"])])  # fmt: skip
    ceiling = ev.get("vq_ceiling", {})
    for key, what in (("reconstructions", "VQ ceiling: {} of reconstructed real images"),
                      ("originals", "scorer on the original real images: {}")):  # fmt: skip
        scores = (ceiling.get(key) or {}).get("scores")
        if scores:
            extra.append(
                [what.format("object accuracy (headline)"), _fmt(_num(scores.get(T2I_METRIC)))]
            )
            extra.append(
                [what.format("colour+shape accuracy (old)"), _fmt(_num(scores.get(T2I_OLD_METRIC)))]
            )
    if extra:
        page.table(["measure", "value"], extra)


_VERDICT_CLASS = {"reproduced": "pass", "within noise": "noise", "contradicted": "fail", "not met": "fail",
                  "not measured": "muted"}  # fmt: skip


def _claims(page: _Page, summary: dict[str, Any]) -> None:
    """The paper's claims against this run (:mod:`cm3leon.eval.demo.claims`)."""
    claims = summary.get("claims") or []
    if not claims:
        return
    page.add("<h2>Paper claim / this run / verdict</h2><p class=\"muted\">Read off the findings and floors "
             "below (nothing recomputed). <i>reproduced</i>: the paper's effect beyond 2 standard errors of "
             "the difference, or the floor met; <i>within noise</i>: inside 2 SE, neither shown nor refuted; "
             "<i>contradicted</i>: the opposite beyond 2 SE; <i>not met</i>: a floor missed.</p>")  # fmt: skip
    rows = [[html.escape(c["paper"]), html.escape(c["claim"]), html.escape(c["this_run"]),
             f'<span class="{_VERDICT_CLASS.get(c["verdict"], "muted")}">{html.escape(c["verdict"])}</span>']
            for c in claims]  # fmt: skip
    page.table(["paper", "claim", "this run", "verdict"], rows, raw=True)


def _ra_vs_plain(page: _Page, summary: dict[str, Any]) -> None:
    """Retrieval-augmented vs plain pretraining at equal compute: budgets, differences, grids."""
    found = summary["ra_vs_plain"]
    compute = found.get("compute", {})
    page.add("<h2>Retrieval-augmented vs plain pretraining at equal compute</h2><p>The paper's efficiency "
             "claim (§1: retrieval augmentation is key for efficient training). A second model, same "
             "architecture, seed, optimiser and schedule, is pretrained on the same documents without "
             "retrieved neighbours (plain token shards), then evaluated on the same prompts at k = 0. Equal "
             f"compute: {html.escape(compute.get('definition', ''))}. Differences are augmented minus plain, "
             "with the paired standard error of the difference (over the same prompts); reported whichever way "
             "they fall.</p>")  # fmt: skip
    ra, plain = compute.get("retrieval_augmented") or {}, compute.get("plain") or {}
    equal = {True: '<span class="pass">yes</span>', False: '<span class="fail">no</span>'}.get(
        compute.get("equal"), '<span class="muted">not checked</span>')
    page.table(["pretraining", "tokens", "steps", "examples", "final loss"],
               [["retrieval-augmented", _fmt(_num(ra.get("tokens"))), _fmt(_num(ra.get("batches"))),
                 _fmt(_num(ra.get("examples"))), _num((summary.get("pretrain") or {}).get("last_loss"))],
                ["plain", _fmt(_num(plain.get("tokens"))), _fmt(_num(plain.get("batches"))),
                 _fmt(_num(plain.get("examples"))), _num((summary.get("plain_pretrain") or {}).get("last_loss"))]])  # fmt: skip
    page.add(f"<p>Equal compute (tokens within one step's worth, {_fmt(compute.get('tolerance_tokens'))}): "
             f"{equal}; plain / augmented tokens {_fmt(compute.get('ratio'), 4)}.</p>")  # fmt: skip
    body = [[c["prompts"], c["metric"], c["strategy"], f"k = {c['ra_k']}", c["retrieval_augmented"], c["plain"],
             c["delta"], c.get("se"), c.get("se_kind", "–"), c.get("verdict", "–")]
            for c in found.get("comparisons", [])]  # fmt: skip
    page.table(["prompts", "measure", "decoding", "augmented model at", "augmented", "plain (k = 0)",
                "difference", "SE", "SE kind", "verdict"], body)  # fmt: skip
    ev = summary["evaluations"]
    grids = [page.image(p, f"plain model: {run}") for name in ("plain_text_to_image", "plain_tail_to_image")
             for run, p in (ev.get(name) or {}).get("grids", {}).items()]  # fmt: skip
    page.add('<div class="figs">' + "".join(grids) + "</div>")


def _num(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _stages(page: _Page, summary: dict[str, Any]) -> None:
    page.add("<h2>Stages</h2><p class=\"muted\">Each stage ran the public commands below "
             f"(all of them: {page.link(page.out / 'commands.sh', 'commands.sh')}; demo config: "
             f"{page.link(page.out / 'demo.yaml', 'demo.yaml')}).</p>")  # fmt: skip
    rows = []
    for s in summary["stages"]:
        now = summary["this_invocation"].get(s["name"], {}).get("status", "")
        cmds = "<br>".join(
            f"<code>{html.escape(c.replace(str(page.out) + '/', ''))}</code>" for c in s["commands"]
        )
        files = [page.link(p, Path(p).name) for p in s["configs"]] + [page.link(s["log"], "log")]
        arts = [page.link(p, k) for k, p in s["artefacts"].items()]
        rows.append([html.escape(s["name"]), html.escape(s["title"]), cmds, " ".join(files), " · ".join(arts),
                     html.escape(f"{s['status']}{' (' + now + ')' if now else ''}"), _fmt(s["seconds"], 3)])  # fmt: skip
    page.table(
        ["stage", "what", "commands", "config / log", "artefacts", "status", "seconds"],
        rows,
        raw=True,
    )


def _training(page: _Page, summary: dict[str, Any]) -> None:
    lay = Layout(page.out)
    page.add("<h2>Training</h2>")
    rows = []
    tok = summary.get("image_tokenizer") or {}
    if tok:
        before, after = tok.get("before", {}), tok.get("after", {})
        rows.append(["VQ tokenizer", f"{tok.get('steps')} steps",
                     f"PSNR {_fmt(before.get('psnr'))} → {_fmt(after.get('psnr'))} dB; codebook usage "
                     f"{_fmt(after.get('codebook_usage'))}, perplexity {_fmt(after.get('perplexity'))}"])  # fmt: skip
    clip = summary.get("clip") or {}
    if clip:
        rows.append(["small CLIP", "", f"held-out recall@1 {_fmt(clip.get('recall@1'))} (chance "
                     f"{_fmt(clip.get('chance@1'))}), recall@5 {_fmt(clip.get('recall@5'))}"])  # fmt: skip
    for name in ("pretrain", "plain_pretrain", "sft"):
        t = summary.get(name) or {}
        if t:
            tokens = f", {t['tokens']:,} tokens" if t.get("tokens") else ""
            rows.append([name, f"{t['steps']} steps{tokens}",
                         f"loss {_fmt(t['first_loss'])} → {_fmt(t['last_loss'])} (text {_fmt(t.get('loss_text_last'))},"
                         f" image {_fmt(t.get('loss_image_last'))} at the end)"])  # fmt: skip
    page.table(["model", "length", "result"], rows)
    figs = [
        page.image(lay.run(n) / "loss_curve.png", f"{n} loss curve (metrics.jsonl)")
        for n in ("pretrain", "plain_pretrain", "sft")
    ]
    page.add(f'<div class="figs">{"".join(figs)}</div>')


def _t2i(page: _Page, t2i: dict[str, Any]) -> None:
    rows = t2i.get("rows", [])
    page.add(
        "<h2>Zero-shot text-to-image (Table 1 / Figure 4)</h2><p>Test-split captions; N samples per "
        "prompt, CLIP re-ranking keeps one; the world scorer reads the kept image back. FID uses CLIP "
        f"features against the prompts' real images. Full table: {page.link(t2i['table'], 'results.md')}.</p>"
    )
    page.add("<p>Headline: <b>object accuracy</b> = colour+shape matches / max(objects drawn, objects "
             "asked); an extra object costs as much as a missing one, so no image made without reading the "
             "prompt expects more than the chance bound (objects asked / 24), however many shapes it shows. "
             "The old colour+shape accuracy counts only the objects asked for: a clutter of shapes raises it "
             "against any scene.</p>")  # fmt: skip
    _t2i_floors(page, rows)
    for metric, title in ((T2I_METRIC, "object accuracy (headline, precision-aware)"),
                          (T2I_OLD_METRIC, "colour+shape accuracy (old, recall only; chance 0.0417)"),
                          ("object_precision", "object precision"), ("object_recall", "object recall"),
                          ("fid", "FID (CLIP)"), ("clip_score", "CLIP score"),
                          ("position_acc", "position accuracy")):  # fmt: skip
        _matrix_table(page, rows, metric, title)
    findings = t2i.get("findings", {})
    notes = []
    for s, entry in findings.get("retrieval", {}).items():
        if T2I_METRIC in entry or T2I_OLD_METRIC in entry:
            notes.append(f"retrieval ({s}), from k = 0 to the largest k: {_accuracies(entry)}; "
                         f"FID {_delta(entry.get('fid'))}")  # fmt: skip
    for k, entry in findings.get("cfg", {}).items():
        if T2I_METRIC in entry or T2I_OLD_METRIC in entry:
            notes.append(
                f"CFG ({k}), vs no guidance: {_accuracies(entry)}; FID {_delta(entry.get('fid'))}"
            )
    for k, by_strategy in findings.get("decoding", {}).items():
        for strategy, entry in by_strategy.items():
            if T2I_METRIC in entry or T2I_OLD_METRIC in entry:
                notes.append(f"{strategy} vs top-p ({k}): {_accuracies(entry)}; FID {_delta(entry.get('fid'))}")
    if notes:
        page.add("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    page.add(
        '<div class="figs">'
        + "".join(page.image(p, Path(p).stem) for p in t2i.get("plots", []))
        + "</div>"
    )
    page.add(
        '<h3>Sample grids</h3><p class="muted">Rows: prompts; columns: candidates (the CLIP choice outlined).</p>'
    )
    grids = t2i.get("grids", {})
    page.add(
        '<div class="figs">' + "".join(page.image(p, run) for run, p in grids.items()) + "</div>"
    )


def _matrix_table(page: _Page, rows: list[dict[str, Any]], metric: str, title: str) -> None:
    """One metric as a strategy x k table (skipped when no run has it)."""
    if not any(_num(r.get(metric)) is not None for r in rows):
        return
    ks = sorted({int(r["k"]) for r in rows if _num(r.get("k")) is not None})
    body = []
    for s in dict.fromkeys(str(r.get("strategy")) for r in rows):
        cells = []
        for k in ks:
            hit = [r for r in rows if str(r.get("strategy")) == s and _num(r.get("k")) == k]
            cells.append(_num(hit[0].get(metric)) if hit else None)
        body.append([s, *cells])
    page.add(f"<h3>{html.escape(title)}</h3>")
    page.table(["strategy \\ k", *[f"k = {k}" for k in ks]], body)


def _tail(page: _Page, tail: dict[str, Any]) -> None:
    """Tail entities: the entity measures over k x decoding, the retrieval difference, grids."""
    rows = tail.get("rows", [])
    page.add(
        "<h2>Tail entities: retrieval for rare named entities (§2.1, Table 1's case)</h2><p>Test-split "
        "prompts naming the world's long-tail entities (4 x 4 colour mosaics with made-up names, Zipfian "
        "frequency: most appear in a handful of pretraining documents). The entity scorer reads each "
        "mosaic cell's colour from the kept image (chance 1/6 per cell); an entity is drawn when at least "
        f"12 of 16 cells are right. Full table: {page.link(tail['table'], 'results.md')}.</p>"
    )  # fmt: skip
    for metric, title in (("entity_cell_acc", "mosaic cells right (chance 0.167)"),
                          ("entity_match", "entity drawn (>= 12 of 16 cells)"),
                          ("baselines.entity_shuffled.entity_cell_acc",
                           "floor: the same images against other prompts' entities"),
                          ("fid", "FID (CLIP)")):  # fmt: skip
        _matrix_table(page, rows, metric, title)
    notes = []
    for s, entry in tail.get("findings", {}).get("retrieval", {}).items():
        if "entity_cell_acc" in entry:
            notes.append(f"retrieval ({s}), from k = 0 to the largest k: cells right "
                         f"{_delta(entry['entity_cell_acc'])}, entity drawn {_delta(entry.get('entity_match'))}")  # fmt: skip
    if notes:
        page.add("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    page.add('<div class="figs">' + "".join(page.image(p, Path(p).stem) for p in tail.get("plots", []))
             + "".join(page.image(p, run) for run, p in tail.get("grids", {}).items()) + "</div>")  # fmt: skip


def _in_context(page: _Page, context: dict[str, Any]) -> None:
    """Object accuracy with nothing, the target itself, or another document in context."""
    rows = {str(r.get("context")): r for r in context.get("rows", [])}
    page.add(
        "<h2>In-context use (the mechanism Table 1 rests on)</h2><p>The same head prompts with "
        "nothing in context, with the target itself (its caption and real image) as the one retrieved "
        "document (oracle retrieval), and with another test document (the control). A model that uses "
        "its context draws the target far better when it is shown; one that ignores it scores the "
        f"same three times. Full table: {page.link(context['table'], 'results.md')}.</p>"
    )  # fmt: skip
    labels = (("none", "nothing retrieved (k = 0)"), ("own", "the target itself (oracle)"),
              ("other", "another test document (control)"))  # fmt: skip
    body = [[label, _num(rows[key].get(T2I_METRIC)), _num(rows[key].get(f"{T2I_METRIC}_se")),
             _num(rows[key].get(T2I_OLD_METRIC))] for key, label in labels if key in rows]  # fmt: skip
    page.table(["in context", "object accuracy", "SE", "colour+shape (old)"], body)


def _t2i_floors(page: _Page, rows: list[dict[str, Any]]) -> None:
    """Each run's headline next to every baseline measured in the same run, and the old measure."""
    names = ("chance", "shuffled", "other_scene", "mean_image")
    body = [[str(r.get("run")), _num(r.get(T2I_METRIC)), _num(r.get(f"{T2I_METRIC}_se")),
             *[_num(r.get(f"baselines.{n}.{T2I_METRIC}")) for n in names],
             _num(r.get("object_precision")), _num(r.get("object_recall")), _num(r.get("object_f1")),
             _num(r.get("scene_acc")), _num(r.get(T2I_OLD_METRIC))]
            for r in rows if _num(r.get(T2I_METRIC)) is not None]  # fmt: skip
    if body:
        page.add("<h3>Object accuracy and its baselines (same run)</h3>")
        page.table(["run", "object accuracy", "SE", "chance bound", "own images vs other prompts",
                    "other scenes' renders", "mean image", "precision", "recall", "F1", "exact scene",
                    "colour+shape (old)"], body)  # fmt: skip


def _accuracies(entry: dict[str, Any]) -> str:
    parts = [f"{name} {_delta(entry[m])}" for m, name in ((T2I_METRIC, "object accuracy"),
             (T2I_OLD_METRIC, "colour+shape accuracy (old)")) if m in entry]  # fmt: skip
    return ", ".join(parts)


def _delta(diff: dict[str, Any] | None) -> str:
    """``+0.035 ± 0.049 SE (within noise)``: a difference, its standard error (paired over
    the prompts; marked ``unpaired`` where the runs' prompts differ) and the verdict."""
    if not diff:
        return "–"
    text = f"{diff['delta']:+.3f}"
    if "se" in diff:
        verdict = {"better": "helps", "worse": "hurts", "unclear": "within noise"}[diff["verdict"]]
        kind = ", unpaired" if diff.get("se_kind") == "unpaired" else ""
        text += f" ± {diff['se']:.3f} SE{kind} ({verdict})"
    return text


def _protocol(page: _Page, name: str, result: dict[str, Any]) -> None:
    titles = {"captioning": "Captioning (Table 2: CIDEr-D)", "vqa": "VQA (Table 2: accuracy)",
              "editing": "Text-guided editing (§4.1)"}  # fmt: skip
    page.add(f"<h2>{titles[name]}</h2>")
    rows = [
        [f"model: {k}", _num(v)]
        for k, v in result.get("metrics", {}).items()
        if _num(v) is not None
    ]
    for base, values in (result.get("baselines") or {}).items():
        if isinstance(values, dict):
            rows += [
                [f"baseline {base}: {k}", _num(v)] for k, v in values.items() if _num(v) is not None
            ]
    for kind, value in (result.get("per_answer_type") or {}).items():
        rows.append([f"model, answer type {kind}", _num(value)])
    page.table(["measure", "value"], rows)
    examples = (
        result.get("per_image") or result.get("per_question") or result.get("per_sample") or {}
    )
    if examples:
        first = next(iter(examples.values()))
        keys = [k for k in first if not isinstance(first[k], (dict, list))][:5]
        page.add("<details><summary>examples</summary>")
        page.table(["id", *keys], [[i, *[e.get(k) for k in keys]] for i, e in examples.items()])
        page.add("</details>")
    folder = Layout(page.out).eval / name
    page.add(
        page.image(folder / "samples.png", f"{name} samples")
        + f"<p>{page.link(folder / 'results.json', 'results.json')}</p>"
    )


def _ceiling(page: _Page, ceiling: dict[str, Any], grid: Path | None) -> None:
    page.add(
        "<h2>VQ ceiling of the scorer</h2><p>Real test images through the VQ tokenizer (encode → decode), "
        "scored like generated images: the best accuracy a perfect model could reach through this tokenizer.</p>"
    )
    rows = []
    for label, key in (("VQ reconstructions", "reconstructions"), ("original images", "originals")):
        scores = (ceiling.get(key) or {}).get("scores") or {}
        if scores:
            rows.append([label, *[_num(scores.get(m)) for m in (T2I_METRIC, "colour_acc", "shape_acc",
                                                                 T2I_OLD_METRIC, "position_acc", "count_acc")]])  # fmt: skip
    page.table(["images", "object accuracy (headline)", "colour", "shape", "colour+shape (old)", "position",
                "count"], rows)  # fmt: skip
    rec = ceiling.get("reconstruct") or {}
    if rec:
        page.add(
            f"<p>Reconstruction PSNR {_fmt(rec.get('psnr'))} dB over {rec.get('images')} images.</p>"
        )
    page.add(page.image(grid, "top: original, bottom: VQ reconstruction"))


def _vq_grid(out: Path) -> Path | None:
    """Originals above their reconstructions (``cm3leon.eval.grid``), for the report."""
    from PIL import Image

    from cm3leon.eval.grid import save_grid

    lay = Layout(out)
    recon = lay.eval / "vq_ceiling" / "reconstructions"
    files = sorted(recon.glob("*.png"))[:12]
    if not files:
        return None
    originals = []
    for f in files:
        match = [p for p in (lay.world / "pretrain").glob(f"*/{f.name}")]
        if not match:
            return None
        originals.append(Image.open(match[0]).convert("RGB"))
    images = originals + [Image.open(f).convert("RGB") for f in files]
    return save_grid(lay.eval / "vq_ceiling" / "grid.png", images, ncols=len(files), cell=64)


def render_report(out: str | Path, stages: Sequence[Stage], outcomes: Sequence[Any] = (),
                  *, wall_seconds: float | None = None) -> Path:  # fmt: skip
    """Write ``<out>/summary.json`` and ``<out>/report.html``; return the report's path."""
    out = Path(out)
    summary = collect_summary(out, stages, outcomes, wall_seconds=wall_seconds)
    atomic_write_json(out / "summary.json", summary)
    page = _Page(out)
    wall = f"{wall_seconds:.0f} s" if wall_seconds is not None else "–"
    page.add(f"<h1>cm3leon demo</h1><p class=\"muted\">{html.escape(str(out))} · written "
             f"{time.strftime('%Y-%m-%d %H:%M:%S')} · wall time of this invocation {wall} · "
             f"{summary['machine']['cpus']} CPUs, load average {', '.join(f'{x:.2f}' for x in summary['machine']['load_average'])}"
             f" · {page.link(out / 'summary.json', 'summary.json')}</p>")  # fmt: skip
    _floors(page, summary)
    _claims(page, summary)
    _stages(page, summary)
    _training(page, summary)
    ev = summary["evaluations"]
    if "text_to_image" in ev:
        _t2i(page, ev["text_to_image"])
    if "tail_to_image" in ev:
        _tail(page, ev["tail_to_image"])
    if "in_context" in ev:
        _in_context(page, ev["in_context"])
    if summary.get("ra_vs_plain"):
        _ra_vs_plain(page, summary)
    if "vq_ceiling" in ev:
        _ceiling(page, ev["vq_ceiling"], _vq_grid(out))
    for name in ("captioning", "vqa", "editing"):
        if name in ev:
            _protocol(page, name, ev[name])
    return atomic_write_text(out / "report.html", page.html("cm3leon demo report"))
