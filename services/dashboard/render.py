"""HTML for the web pages, rendered from the same models the JSON API serves (pure functions).

Every value from a record goes through :func:`html.escape`. The pages carry no external assets:
CSS and the small refresh script are inline, the loss chart is an inline SVG.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from html import escape
from typing import Final
from urllib.parse import quote

from dashboard.schemas import JobDetail, JobMetrics, JobSummary, SeriesOut

KNOWN_STATES: Final = frozenset(
    {"waiting", "pending", "running", "success", "failed", "canceled", "unknown"}
)
# Distinguishable in colour and, for colour-blind readers, always shown with the state's name.
SERIES_COLOURS: Final = ("#1f5fbf", "#b8461b", "#2e7d32", "#6a3d9a", "#8a6d00")

CSS: Final = """
:root { color-scheme: light; font-family: system-ui, sans-serif; color: #1b1b1b; }
body { margin: 0 auto; max-width: 72rem; padding: 1rem 1.5rem; line-height: 1.45; }
a { color: #1a4fa0; }
a:focus-visible { outline: 3px solid #1a4fa0; outline-offset: 2px; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1.5rem; }
caption { text-align: left; font-weight: 600; padding: .25rem 0; }
th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #d0d0d0; }
td.num { font-variant-numeric: tabular-nums; text-align: right; }
.state { display: inline-block; padding: .05rem .5rem; border-radius: .75rem; font-weight: 600;
         border: 1px solid currentColor; }
.state-success { color: #1e6b2f; background: #e3f4e6; }
.state-failed { color: #a11a1a; background: #fbe6e6; }
.state-running { color: #12509e; background: #e3edfb; }
.state-waiting, .state-pending { color: #7a5300; background: #fbf1dc; }
.state-canceled, .state-unknown, .state-other { color: #4a4a4a; background: #eeeeee; }
.muted { color: #595959; }
figure { margin: 0 0 1.5rem; }
svg text { font-size: 11px; fill: #3a3a3a; }
""".strip()

SCRIPT: Final = """
(() => {
  const target = document.getElementById("live");
  const status = document.getElementById("live-status");
  if (!target || !target.dataset.fragment) return;
  let busy = false;
  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const response = await fetch(target.dataset.fragment, {headers: {Accept: "text/html"}});
      if (response.ok) {
        target.innerHTML = await response.text();
        status.textContent = "Updated " + new Date().toLocaleTimeString();
      } else {
        status.textContent = "Update failed (HTTP " + response.status + ")";
      }
    } catch (err) {
      status.textContent = "Dashboard unreachable; retrying";
    } finally {
      busy = false;
    }
  }
  if ("EventSource" in window) {
    const events = new EventSource("/api/events");
    events.addEventListener("change", refresh);
    events.onerror = () => { status.textContent = "Reconnecting to live updates"; };
  } else {
    setInterval(refresh, 5000);
  }
})();
""".strip()


def _fmt_number(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _fmt_time(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def state_badge(state: str) -> str:
    css = state if state in KNOWN_STATES else "other"
    return f'<span class="state state-{css}">{escape(state)}</span>'


def page(title: str, body: str, *, nonce: str, fragment_url: str | None) -> str:
    """A whole page; with a ``fragment_url``, the script refreshes ``body`` from it on changes."""
    live = f' data-fragment="{escape(fragment_url)}"' if fragment_url else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · Tessera</title>
<style nonce="{nonce}">{CSS}</style>
</head>
<body>
<header><p><a href="/">Tessera dashboard</a></p></header>
<main>
<h1>{escape(title)}</h1>
<p id="live-status" class="muted" role="status" aria-live="polite"></p>
<div id="live"{live}>
{body}
</div>
</main>
<script nonce="{nonce}">{SCRIPT}</script>
</body>
</html>
"""


def jobs_table(jobs: Sequence[JobSummary], total: int) -> str:
    if not jobs:
        return '<p class="muted">No jobs yet.</p>'
    rows = "\n".join(
        "<tr>"
        f'<td><a href="/jobs/{escape(quote(j.job_id, safe=""))}">{escape(j.job_id)}</a></td>'
        f"<td>{state_badge(j.state)}</td>"
        f"<td>{escape(', '.join(j.parties)) or '—'}</td>"
        f'<td class="num">{j.steps_succeeded}/{j.steps_total}</td>'
        f'<td class="num">{_fmt_number(j.auc)}</td>'
        f'<td class="num">{_fmt_number(j.ks)}</td>'
        f"<td>{_fmt_time(j.last_seen)}</td>"
        "</tr>"
        for j in jobs
    )
    shown = f"{len(jobs)} of {total}" if total > len(jobs) else str(total)
    return f"""<table>
<caption>Jobs, newest first ({shown})</caption>
<thead><tr><th scope="col">Job</th><th scope="col">State</th><th scope="col">Parties</th>
<th scope="col">Steps done</th><th scope="col">AUC</th><th scope="col">KS</th>
<th scope="col">Last update</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>"""


def _steps_table(detail: JobDetail) -> str:
    if not detail.steps:
        return '<p class="muted">No steps reported yet.</p>'
    parties = sorted({t.party for s in detail.steps for t in s.tasks})
    head = "".join(f'<th scope="col">Party {escape(p)}</th>' for p in parties)
    rows = []
    for step in detail.steps:
        by_party = {t.party: t for t in step.tasks}
        cells = []
        for party in parties:
            task = by_party.get(party)
            if task is None:
                cells.append('<td class="muted">—</td>')
                continue
            reason = f' <span class="muted">{escape(task.reason)}</span>' if task.reason else ""
            cells.append(f"<td>{state_badge(task.state)}{reason}</td>")
        rows.append(
            f'<tr><th scope="row">{escape(step.name)}</th><td>{state_badge(step.state)}</td>'
            f"{''.join(cells)}</tr>"
        )
    return f"""<table>
<caption>Steps</caption>
<thead><tr><th scope="col">Step</th><th scope="col">Overall</th>{head}</tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table>"""


def _metrics_table(metrics: JobMetrics) -> str:
    if not metrics.scalars:
        return '<p class="muted">No scalar metrics yet.</p>'
    rows = "\n".join(
        f"<tr><td>{escape(m.name)}</td><td>{escape(m.step or '—')}</td>"
        f'<td>{escape(m.party)}</td><td class="num">{_fmt_number(m.value, 6)}</td></tr>'
        for m in metrics.scalars
    )
    return f"""<table>
<caption>Metrics</caption>
<thead><tr><th scope="col">Metric</th><th scope="col">Step</th><th scope="col">Party</th>
<th scope="col">Value</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>"""


def line_chart(
    series: Sequence[SeriesOut], *, title: str, width: int = 560, height: int = 220
) -> str:
    """An inline SVG line chart of per-iteration series, with a table of the values under it."""
    points = [[(p.iteration, p.value) for p in s.points if p.value is not None] for s in series]
    xs = [x for line in points for x, _ in line]
    ys = [y for line in points for _, y in line]
    if not xs:
        return f'<p class="muted">No {escape(title.lower())} reported yet.</p>'
    left, right, top, bottom = 56, 12, 12, 28
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y: float) -> float:
        return top + (y1 - y) / (y1 - y0) * (height - top - bottom)

    lines, legend = [], []
    for i, (s, line) in enumerate(zip(series, points, strict=True)):
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in line)
        lines.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coords}"/>'
        )
        label = f"{s.step or '—'} · party {s.party}"
        swatch = (
            '<svg width="12" height="12" aria-hidden="true">'
            f'<rect width="12" height="12" fill="{colour}"/></svg>'
        )
        legend.append(f"<li>{swatch} {escape(label)}</li>")
    bottom_y, right_x = height - bottom, width - right
    axes = (
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom_y}" stroke="#777"/>'
        f'<line x1="{left}" y1="{bottom_y}" x2="{right_x}" y2="{bottom_y}" stroke="#777"/>'
        f'<text x="{left - 4}" y="{top + 8}" text-anchor="end">{y1:.4g}</text>'
        f'<text x="{left - 4}" y="{bottom_y}" text-anchor="end">{y0:.4g}</text>'
        f'<text x="{left}" y="{height - 8}" text-anchor="middle">{x0}</text>'
        f'<text x="{right_x}" y="{height - 8}" text-anchor="end">{x1}</text>'
    )
    desc = (
        f"{len(series)} series over iterations {x0} to {max(xs)}, "
        f"values from {min(ys):.4g} to {max(ys):.4g}."
    )
    rows = "\n".join(
        f"<tr><td>{escape(s.step or '—')}</td><td>{escape(s.party)}</td>"
        f'<td class="num">{p.iteration}</td><td class="num">{_fmt_number(p.value, 6)}</td></tr>'
        for s in series
        for p in s.points
    )
    return f"""<figure>
<svg role="img" aria-labelledby="chart-title chart-desc" width="{width}" height="{height}"
 viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">
<title id="chart-title">{escape(title)}</title>
<desc id="chart-desc">{escape(desc)}</desc>
{axes}
{"".join(lines)}
</svg>
<figcaption>{escape(title)} per iteration<ul>{"".join(legend)}</ul></figcaption>
<details><summary>{escape(title)} values</summary>
<table><thead><tr><th scope="col">Step</th><th scope="col">Party</th>
<th scope="col">Iteration</th><th scope="col">Value</th></tr></thead>
<tbody>
{rows}
</tbody></table></details>
</figure>"""


def job_section(detail: JobDetail, metrics: JobMetrics) -> str:
    reason = f"<dt>Reason</dt><dd>{escape(detail.reason)}</dd>" if detail.reason else ""
    curves = ", ".join(
        escape(f"{c.name} ({c.step or '—'}, party {c.party})") for c in metrics.curves
    )
    return f"""<dl>
<dt>State</dt><dd>{state_badge(detail.state)}</dd>{reason}
<dt>Initiator</dt><dd>{escape(detail.initiator or "—")}</dd>
<dt>Parties</dt><dd>{escape(", ".join(detail.parties)) or "—"}</dd>
<dt>AUC</dt><dd>{_fmt_number(detail.auc)}</dd>
<dt>KS</dt><dd>{_fmt_number(detail.ks)}</dd>
<dt>First seen</dt><dd>{_fmt_time(detail.first_seen)}</dd>
<dt>Last update</dt><dd>{_fmt_time(detail.last_seen)}</dd>
</dl>
{_steps_table(detail)}
<h2>Loss</h2>
{line_chart(metrics.loss, title="Loss")}
<h2>Metrics</h2>
{_metrics_table(metrics)}
<p>Curves: {curves or "none"} (as JSON in
<a href="/api/jobs/{escape(quote(detail.job_id, safe=""))}/metrics">the metrics API</a>).</p>"""


def not_found_fragment(job_id: str) -> str:
    return f'<p>No job <code>{escape(job_id)}</code> is known here. <a href="/">All jobs</a></p>'


def not_found(job_id: str, *, nonce: str) -> str:
    return page("Job not found", not_found_fragment(job_id), nonce=nonce, fragment_url=None)
