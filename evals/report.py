"""A self-contained HTML report: summary table, risk-coverage curve, score histograms by label,
and a browsable per-item table with each claim coloured by its verdict.

Plots are inline SVG written here (no plotting library, no scripts from the network), so the
file opens anywhere, offline, and is byte-identical for identical inputs."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path

W, H, PAD = 420, 260, 40
COLOURS = ["#2b7bba", "#d9534f", "#5cb85c", "#f0ad4e"]


def risk_coverage(scores: Sequence[float], bad: Sequence[bool]) -> list[tuple[float, float]]:
    """Answer the items with the highest scores first: for each cut, (coverage, risk) where
    risk is the share of bad items among those answered."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    pts, n_bad = [], 0
    for j, i in enumerate(order, 1):
        n_bad += bool(bad[i])
        pts.append((j / len(order), n_bad / j))
    return pts


def _x(v: float) -> float:
    return PAD + v * (W - 2 * PAD)


def _y(v: float) -> float:
    return H - PAD - v * (H - 2 * PAD)


def _axes(xlabel: str, ylabel: str) -> list[str]:
    out = [f'<line x1="{PAD}" y1="{H-PAD}" x2="{W-PAD}" y2="{H-PAD}" stroke="#333"/>',
           f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H-PAD}" stroke="#333"/>',
           f'<text x="{W/2}" y="{H-8}" text-anchor="middle" font-size="12">{html.escape(xlabel)}</text>',
           f'<text x="12" y="{H/2}" text-anchor="middle" font-size="12" transform="rotate(-90 12 {H/2})">'
           f'{html.escape(ylabel)}</text>']
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        out.append(f'<text x="{_x(t):.1f}" y="{H-PAD+14}" text-anchor="middle" font-size="10">{t:g}</text>')
        out.append(f'<text x="{PAD-4}" y="{_y(t)+3:.1f}" text-anchor="end" font-size="10">{t:g}</text>')
    return out


def line_svg(points: Sequence[tuple[float, float]], xlabel: str, ylabel: str) -> str:
    parts = _axes(xlabel, ylabel)
    if points:
        ymax = max(1e-9, max(p[1] for p in points))
        scale = 1.0 if ymax > 0.5 else 0.5 if ymax > 0.25 else 0.25
        path = " ".join(f"{_x(c):.1f},{_y(r / scale):.1f}" for c, r in points)
        parts.append(f'<polyline fill="none" stroke="{COLOURS[0]}" stroke-width="2" points="{path}"/>')
        parts.append(f'<text x="{W-PAD}" y="{PAD-8}" text-anchor="end" font-size="10">y axis 0..{scale:g}</text>')
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}">{"".join(parts)}</svg>'


def hist_svg(groups: dict[str, Sequence[float]], xlabel: str, bins: int = 20) -> str:
    """Overlaid histograms of scores in [0, 1], one colour per label, normalised per group."""
    parts = _axes(xlabel, "share of items")
    counts = {}
    for name, vals in groups.items():
        c = [0] * bins
        for v in vals:
            c[min(bins - 1, max(0, int(float(v) * bins)))] += 1
        counts[name] = [x / max(1, len(vals)) for x in c]
    top = max([max(c) for c in counts.values()] + [1e-9])
    bw = (W - 2 * PAD) / bins
    for g, (name, c) in enumerate(counts.items()):
        col = COLOURS[g % len(COLOURS)]
        for b, v in enumerate(c):
            h = v / top * (H - 2 * PAD)
            parts.append(f'<rect x="{PAD + b * bw + 1:.1f}" y="{H - PAD - h:.1f}" width="{bw - 2:.1f}" '
                         f'height="{h:.1f}" fill="{col}" fill-opacity="0.45"/>')
        parts.append(f'<text x="{W-PAD}" y="{PAD + 14 * g}" text-anchor="end" font-size="11" fill="{col}">'
                     f'{html.escape(name)} (n={len(groups[name])})</text>')
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}">{"".join(parts)}</svg>'


def claims_html(claims: Sequence[dict]) -> str:
    out = []
    for c in claims:
        col = "#c8f7c5" if c.get("supported") else "#f7c5c5"
        out.append(f'<span style="background:{col}" title="score {float(c.get("score", 0)):.3f}">'
                   f'{html.escape(str(c.get("claim", "")))}</span>')
    return " ".join(out)


def write_report(path: Path, title: str, summary: dict, curve: Sequence[tuple[float, float]],
                 hists: dict[str, Sequence[float]], hist_label: str, rows: Sequence[dict],
                 columns: Sequence[str]) -> Path:
    """rows: dicts with the given columns (plain values, escaped here) and optional 'claims'
    (list of {claim, supported, score}) rendered coloured in the last column."""
    summ = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>"
                   for k, v in summary.items())
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "<th>claims (green: supported)</th>"
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c, '')))}</td>" for c in columns)
                   + f"<td>{claims_html(r.get('claims') or [])}</td></tr>" for r in rows)
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 6px;font-size:13px;vertical-align:top;text-align:left}}
.plots{{display:flex;gap:2em;flex-wrap:wrap}}</style></head><body>
<h1>{html.escape(title)}</h1><h2>Summary</h2><table>{summ}</table>
<div class="plots"><div><h2>Risk-coverage</h2>{line_svg(curve, "coverage (share answered / accepted)", "risk")}</div>
<div><h2>Scores by label</h2>{hist_svg(hists, hist_label)}</div></div>
<h2>Items ({len(rows)})</h2><p>Filter: <input id="f" oninput="filt()" placeholder="text in row"></p>
<table id="items"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
<script>function filt(){{var q=document.getElementById('f').value.toLowerCase();
document.querySelectorAll('#items tbody tr').forEach(function(r){{r.style.display=r.textContent.toLowerCase().indexOf(q)<0?'none':''}})}}</script>
</body></html>"""
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(doc, encoding="utf-8")
    tmp.replace(path)
    return path


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False)
    return str(v)
