"""HTML for the web pages, rendered from the same models the JSON API serves (pure functions).

Every value from a record goes through :func:`html.escape`. The pages carry no external assets:
CSS and the small live-update script are inline, charts are inline SVG (see :mod:`charts`).
A page has a static part (forms) and a ``#live`` part that the script swaps for a fresh fragment
whenever ``/api/events`` reports a change.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from html import escape
from typing import Final
from urllib.parse import quote, urlencode

from dashboard.charts import Axes, Marker, Series, bar_chart, line_chart
from dashboard.dag import dag_svg, state_mark
from dashboard.schemas import (
    JobAnalysis,
    JobDetail,
    JobLogs,
    JobMetrics,
    JobSummary,
    Pipelines,
    StageOut,
    StepOut,
)

KNOWN_STATES: Final = frozenset(
    {
        "pending_approval",
        "waiting",
        "pending",
        "running",
        "success",
        "failed",
        "canceled",
        "unknown",
    }
)

CSS: Final = """
:root { color-scheme: light; font-family: system-ui, sans-serif; color: #1b1b1b; }
body { margin: 0 auto; max-width: 76rem; padding: .5rem 1.5rem 2rem; line-height: 1.45; }
nav ul { display: flex; gap: 1.25rem; list-style: none; padding: 0; margin: .5rem 0; }
a { color: #1a4fa0; }
a:focus-visible, input:focus-visible, select:focus-visible, button:focus-visible {
  outline: 3px solid #1a4fa0; outline-offset: 2px; }
h1 { font-size: 1.5rem; margin: .5rem 0; } h2 { font-size: 1.2rem; margin: 1.25rem 0 .5rem; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; }
caption { text-align: left; font-weight: 600; padding: .25rem 0; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #d0d0d0;
  vertical-align: top; }
td.num { font-variant-numeric: tabular-nums; text-align: right; }
.state { display: inline-block; padding: 0 .45rem; border-radius: .75rem; font-weight: 600;
  border: 1px solid currentColor; white-space: nowrap; }
.state-success { color: #1e6b2f; background: #e3f4e6; }
.state-failed { color: #a11a1a; background: #fbe6e6; }
.state-running { color: #12509e; background: #e3edfb; }
.state-waiting, .state-pending, .state-pending_approval { color: #7a5300; background: #fbf1dc; }
.state-canceled, .state-unknown, .state-other { color: #4a4a4a; background: #eeeeee; }
.muted { color: #595959; }
form.bar { display: flex; gap: .75rem; align-items: end; flex-wrap: wrap; margin: .5rem 0; }
form.bar label { display: flex; flex-direction: column; font-size: .9rem; }
.summary { display: grid; grid-template-columns: repeat(4, max-content auto); gap: .2rem 1rem; }
.summary dt { font-weight: 600; } .summary dd { margin: 0; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(450px, 1fr));
  gap: .5rem 1.5rem; }
figure { margin: 0 0 1rem; } figcaption { font-size: .9rem; }
ul.legend { list-style: none; padding: 0; margin: .2rem 0; display: flex; gap: 1rem;
  flex-wrap: wrap; }
svg text { font-size: 11px; fill: #2a2a2a; }
svg .axis-label { font-size: 12px; font-weight: 600; }
svg .grid { stroke: #e2e2e2; } svg .frame { fill: none; stroke: #777; }
svg .axis { stroke: #777; } svg .chance { stroke: #888; stroke-dasharray: 3 4; }
svg .marker { fill: #a11a1a; } svg .marker-line { stroke: #a11a1a; stroke-width: 2; }
svg .marker-label { font-weight: 600; fill: #a11a1a; }
.dag svg .node rect { fill: #fff; stroke: #777; } .dag svg .edge { stroke: #555; }
.dag svg .arrow { fill: #555; } .dag svg .node-title { font-weight: 700; font-size: 12px; }
.dag svg .stripe { stroke: none; fill: #bbb; }
.dag svg .node-success .stripe { fill: #2e7d32; } .dag svg .node-success rect { stroke: #2e7d32; }
.dag svg .node-failed .stripe { fill: #a11a1a; } .dag svg .node-failed rect { stroke: #a11a1a; }
.dag svg .node-running .stripe { fill: #12509e; } .dag svg .node-running rect { stroke: #12509e; }
.dag svg .muted-text { fill: #595959; }
.logs { max-height: 22rem; overflow: auto; border: 1px solid #ccc; padding: .25rem .5rem;
  font: 12px/1.4 ui-monospace, monospace; background: #fafafa; }
.logs .lvl-error, .logs .lvl-warning { color: #a11a1a; font-weight: 600; }
.confusion td, .confusion th { text-align: center; }
""".strip()

SCRIPT: Final = """
(() => {
  const target = document.getElementById("live");
  const status = document.getElementById("live-status");
  if (!target || !target.dataset.fragment) return;
  let busy = false, again = false;
  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const response = await fetch(target.dataset.fragment, {headers: {Accept: "text/html"}});
      if (response.ok) {
        const logs = target.querySelector(".logs");
        const follow = !logs || logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 4;
        target.innerHTML = await response.text();
        const fresh = target.querySelector(".logs");
        if (fresh && follow) fresh.scrollTop = fresh.scrollHeight;
        status.textContent = "Live · updated " + new Date().toLocaleTimeString();
      } else {
        status.textContent = "Update failed (HTTP " + response.status + ")";
      }
    } catch (err) {
      status.textContent = "Dashboard unreachable; retrying";
    } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  }
  const fresh = target.querySelector(".logs");
  if (fresh) fresh.scrollTop = fresh.scrollHeight;
  if ("EventSource" in window) {
    const events = new EventSource("/api/events");
    events.addEventListener("change", refresh);
    events.onopen = () => { status.textContent = "Live"; };
    events.onerror = () => { status.textContent = "Reconnecting to live updates"; };
  } else {
    setInterval(refresh, 5000);
  }
})();
""".strip()


def fmt_number(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def fmt_time(ts: float | None) -> str:
    return "—" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def job_href(job_id: str) -> str:
    return f"/jobs/{escape(quote(job_id, safe=''))}"


def state_badge(state: str) -> str:
    css = state if state in KNOWN_STATES else "other"
    return (
        f'<span class="state state-{css}" data-state="{escape(state)}">'
        f"{state_mark(state)} {escape(state)}</span>"
    )


def page(title: str, body: str, *, nonce: str, fragment_url: str | None, controls: str = "") -> str:
    """A whole page; with a ``fragment_url`` the script refreshes ``body`` from it on changes."""
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
<header><nav aria-label="Dashboard"><ul><li><strong>Tessera</strong></li>
<li><a href="/">Jobs</a></li><li><a href="/pipelines">Task flow</a></li>
<li><a href="/compare">Compare</a></li><li><a href="/docs">API</a></li></ul></nav></header>
<main>
<h1>{escape(title)}</h1>
{controls}
<p id="live-status" class="muted" role="status" aria-live="polite"></p>
<div id="live"{live}>
{body}
</div>
</main>
<script nonce="{nonce}">{SCRIPT}</script>
</body>
</html>
"""


def message(title: str, text: str, *, nonce: str) -> str:
    """An error page (404, 422): what went wrong and a way back."""
    body = f'<p>{escape(text)}</p><p><a href="/">All jobs</a></p>'
    return page(title, body, nonce=nonce, fragment_url=None)


def login(next_path: str, *, nonce: str, error: str | None = None) -> str:
    """The login form: one of the party's API tokens (``tessera token create``)."""
    problem = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    body = f"""{problem}<form method="post" action="/login" class="login">
<input type="hidden" name="next" value="{escape(next_path)}">
<label>API token <input type="password" name="token" autocomplete="current-password"
 size="50" required autofocus></label>
<button type="submit">Log in</button>
</form>
<p class="muted">A token of this party's: <code>tessera token create --env-file FILE</code>.</p>"""
    return page("Log in", body, nonce=nonce, fragment_url=None)


# --- the job list ----------------------------------------------------------------------------


def jobs_controls(states: Mapping[str, int], *, state: str | None, search: str) -> str:
    options = ['<option value="">any state</option>'] + [
        f'<option value="{escape(s)}"{" selected" if s == state else ""}>{escape(s)} ({n})</option>'
        for s, n in states.items()
    ]
    return f"""<form class="bar" method="get" action="/" role="search">
<label>State <select name="state">{"".join(options)}</select></label>
<label>Job id contains <input type="search" name="q" value="{escape(search)}" size="28"></label>
<button type="submit">Filter</button> <a href="/">Clear</a>
</form>"""


def _roles(parties: Sequence[str]) -> str:
    return "<br>".join(escape(p.replace("=", " · ")) for p in parties) or "—"


def jobs_table(
    jobs: Sequence[JobSummary], *, total: int, offset: int, limit: int, query: Mapping[str, str]
) -> str:
    if not jobs:
        return (
            '<p class="muted">No jobs match.</p>'
            if total == 0 and query
            else ('<p class="muted">No jobs yet.</p>')
        )
    rows = "\n".join(
        f'<tr data-job="{escape(j.job_id)}">'
        f'<td><a href="{job_href(j.job_id)}">{escape(j.job_id)}</a></td>'
        f"<td>{state_badge(j.state)}</td>"
        f"<td>{escape(j.initiator or '—')}</td>"
        f"<td>{_roles(j.parties)}</td>"
        f"<td>{escape(j.pipeline_name or '')} {escape(' → '.join(j.pipeline)) or '—'}"
        f' <span class="muted">({j.steps_succeeded}/{j.steps_total} done)</span></td>'
        f"<td>{fmt_time(j.started_at or j.first_seen)}</td>"
        f'<td class="num">{fmt_duration(j.duration_s)}</td>'
        f'<td class="num" data-metric="auc">{fmt_number(j.auc)}</td>'
        f'<td class="num" data-metric="ks">{fmt_number(j.ks)}</td>'
        "</tr>"
        for j in jobs
    )
    first, last = offset + 1, offset + len(jobs)
    links = []
    if offset > 0:
        prev = urlencode({**query, "offset": max(0, offset - limit)})
        links.append(f'<a href="/?{escape(prev)}" rel="prev">← Newer</a>')
    if last < total:
        nxt = urlencode({**query, "offset": offset + limit})
        links.append(f'<a href="/?{escape(nxt)}" rel="next">Older →</a>')
    return f"""<table id="jobs">
<caption>Jobs {first} to {last} of {total}, newest first (times UTC)</caption>
<thead><tr><th scope="col">Job</th><th scope="col">State</th><th scope="col">Initiator</th>
<th scope="col">Parties and roles</th><th scope="col">Pipeline</th><th scope="col">Started</th>
<th scope="col">Duration</th><th scope="col">AUC</th><th scope="col">KS</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
<nav aria-label="Pages" class="pages">{" · ".join(links)}</nav>"""


# --- one job ---------------------------------------------------------------------------------


def _summary(detail: JobDetail) -> str:
    reason = f"<dt>Reason</dt><dd>{escape(detail.reason)}</dd>" if detail.reason else ""
    return f"""<dl class="summary">
<dt>State</dt><dd id="job-state">{state_badge(detail.state)}</dd>
<dt>Initiator</dt><dd>{escape(detail.initiator or "—")}</dd>
<dt>Parties</dt><dd>{escape(", ".join(detail.parties)) or "—"}</dd>
<dt>Duration</dt><dd>{fmt_duration(detail.duration_s)}</dd>
<dt>AUC</dt><dd id="job-auc">{fmt_number(detail.auc)}</dd>
<dt>KS</dt><dd id="job-ks">{fmt_number(detail.ks)}</dd>
<dt>Started</dt><dd>{fmt_time(detail.started_at or detail.first_seen)}</dd>
<dt>Last update</dt><dd>{fmt_time(detail.last_seen)}</dd>{reason}
</dl>"""


def _party_ids(detail: JobDetail) -> list[str]:
    declared = [p.split("=", 1)[0] for p in detail.parties]
    seen = sorted({t.party for s in detail.steps for t in s.tasks} - set(declared))
    return declared + seen


def _args(step: StepOut) -> str:
    if not step.args:
        return '<span class="muted">—</span>'
    items = "".join(
        f"<li><code>{escape(k)}</code>: {escape(str(v))}</li>" for k, v in sorted(step.args.items())
    )
    return f"<details><summary>{len(step.args)} parameters</summary><ul>{items}</ul></details>"


def _stages(stages: list[StageOut]) -> str:
    """A Spark step's stage timings, per kind of work, folded under its task's state."""
    if not stages:
        return ""
    rows = "".join(
        f'<tr><th scope="row"><code>{escape(s.label)}</code></th>'
        f"<td>{s.seconds:.2f} s</td><td>{s.jobs}</td><td>{s.stages}</td><td>{s.tasks}</td></tr>"
        for s in stages
    )
    total = sum(s.seconds for s in stages)
    return (
        f'<details class="stages"><summary>Spark stages: {total:.1f} s</summary>'
        '<table><thead><tr><th scope="col">work</th><th scope="col">time</th>'
        '<th scope="col">jobs</th><th scope="col">stages</th><th scope="col">tasks</th></tr>'
        f"</thead><tbody>{rows}</tbody></table></details>"
    )


def steps_table(detail: JobDetail) -> str:
    if not detail.steps:
        return '<p class="muted">No steps reported yet.</p>'
    parties = _party_ids(detail)
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
            engine = ""
            if task.engine:
                engine = f' <span class="engine muted">on {escape(task.engine)}</span>'
            cells.append(
                f'<td data-party="{escape(party)}">{state_badge(task.state)}{engine}{reason}'
                f"{_stages(task.stages)}</td>"
            )
        rows.append(
            f'<tr data-step="{escape(step.name)}" data-state="{escape(step.state)}">'
            f'<th scope="row">{escape(step.name)}</th>'
            f"<td>{escape(step.component or '—')}</td><td>{state_badge(step.state)}</td>"
            f"{''.join(cells)}<td>{_args(step)}</td></tr>"
        )
    return f"""<table id="steps">
<caption>Steps: state on each party, and this party's parameters</caption>
<thead><tr><th scope="col">Step</th><th scope="col">Component</th><th scope="col">Overall</th>
{head}<th scope="col">Parameters</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table>"""


def _metrics_table(metrics: JobMetrics) -> str:
    if not metrics.scalars:
        return '<p class="muted">No scalar metrics yet.</p>'
    rows = "\n".join(
        f'<tr data-metric="{escape(m.name)}"><td>{escape(m.name)}</td>'
        f"<td>{escape(m.step or '—')}</td><td>{escape(m.party)}</td>"
        f'<td class="num">{fmt_number(m.value, 6)}</td></tr>'
        for m in metrics.scalars
    )
    return f"""<table id="metrics">
<caption>Metrics</caption>
<thead><tr><th scope="col">Metric</th><th scope="col">Step</th><th scope="col">Party</th>
<th scope="col">Value</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>"""


def loss_chart(metrics: JobMetrics, *, label_job: str | None = None) -> str:
    series = [
        Series(
            f"{label_job + ' · ' if label_job else ''}{s.step or '—'} · party {s.party}",
            [(p.iteration, p.value) for p in s.points if p.value is not None],
        )
        for s in metrics.loss
    ]
    return line_chart(
        series,
        Axes("iteration", "loss", x_integer=True),
        title="Loss per iteration",
        chart_id="loss-chart",
    )


def roc_chart(analyses: Sequence[JobAnalysis], *, by_job: bool = False) -> str:
    series = []
    for a in analyses:
        if a.roc is None:
            continue
        name = f"{a.job_id} · " if by_job else ""
        auc = f"AUC = {a.auc:.4f}" if a.auc is not None else "AUC unknown"
        series.append(Series(f"{name}ROC ({auc})", list(zip(a.roc.fpr, a.roc.tpr, strict=True))))
    axes = Axes("false positive rate", "true positive rate", (0, 1), (0, 1), diagonal=True)
    return line_chart(series, axes, title="ROC curve", chart_id="roc-chart")


def ks_chart(analyses: Sequence[JobAnalysis], *, by_job: bool = False) -> str:
    series, markers = [], []
    for a in analyses:
        if a.roc is None or not a.roc.thresholds:
            continue
        name = f"{a.job_id} · " if by_job else ""
        t = a.roc.thresholds
        series.append(Series(f"{name}TPR (positives above)", list(zip(t, a.roc.tpr, strict=True))))
        series.append(Series(f"{name}FPR (negatives above)", list(zip(t, a.roc.fpr, strict=True))))
        p = a.ks_point
        if p is not None and p.threshold is not None:
            markers.append(
                Marker(
                    f"{name}KS = {p.ks:.4f} at {p.threshold:.3f}",
                    (p.threshold, p.fpr),
                    (p.threshold, p.tpr),
                )
            )
    axes = Axes("score threshold", "cumulative rate", None, (0, 1), markers=markers)
    return line_chart(series, axes, title="KS curve", chart_id="ks-chart")


def gain_charts(analyses: Sequence[JobAnalysis], *, by_job: bool = False) -> str:
    gain, lift = [], []
    notes = []
    for a in analyses:
        if not a.gains:
            continue
        name = f"{a.job_id} · " if by_job else ""
        gain.append(Series(f"{name}gain", [(g.depth, g.gain) for g in a.gains]))
        lift.append(
            Series(f"{name}lift", [(g.depth, g.lift) for g in a.gains if g.lift is not None])
        )
        if a.positive_share is not None:
            how = (
                "from the confusion counts"
                if a.positive_share_exact
                else ("estimated from precision, recall and the ROC at the evaluation threshold")
            )
            notes.append(f"{name}positives: {a.positive_share:.1%} ({how})")
    if not gain:
        return (
            '<p class="muted">Lift and gain need the share of positives, which the metrics do '
            "not give for this job.</p>"
        )
    share = "<br>".join(escape(n) for n in notes)
    return (
        line_chart(
            gain,
            Axes(
                "share of population targeted",
                "share of positives captured",
                (0, 1),
                (0, 1),
                diagonal=True,
            ),
            title="Cumulative gain",
            chart_id="gain-chart",
        )
        + line_chart(
            lift,
            Axes("share of population targeted", "lift", (0, 1), None),
            title="Lift",
            chart_id="lift-chart",
        )
        + f'<p class="muted">{share}</p>'
    )


def confusion_controls(job_id: str, threshold: float) -> str:
    return f"""<form class="bar" method="get" action="{job_href(job_id)}">
<label>Confusion matrix at score threshold
<input type="number" name="threshold" min="0" max="1" step="0.01" value="{threshold:.2f}"></label>
<button type="submit">Show</button></form>"""


def confusion_table(a: JobAnalysis) -> str:
    c = a.confusion
    if c is None:
        return '<p class="muted">No ROC with thresholds yet, so no confusion matrix.</p>'

    def cell(rate: float, key: str) -> str:
        count = f"<br>≈ {c.counts[key]:.0f}" if c.counts else ""
        return f'<td data-cell="{key}">{key.upper()} {rate:.1%}{count}</td>'

    return f"""<table class="confusion" id="confusion">
<caption>Confusion matrix at threshold {c.threshold:.2f} (rates per actual class)</caption>
<thead><tr><td></td><th scope="col">predicted 1</th><th scope="col">predicted 0</th></tr></thead>
<tbody>
<tr><th scope="row">actual 1</th>{cell(c.tpr, "tp")}{cell(c.fnr, "fn")}</tr>
<tr><th scope="row">actual 0</th>{cell(c.fpr, "fp")}{cell(c.tnr, "tn")}</tr>
</tbody></table>"""


def importance_chart(a: JobAnalysis) -> str:
    if not a.importance:
        return ""
    bars = [(f.feature, f.importance) for f in a.importance[:20]]
    return "<h2>Feature importance</h2>" + bar_chart(
        bars, title="Feature importance (largest first)", chart_id="importance-chart"
    )


def logs_view(job_id: str, logs: JobLogs) -> str:
    href = f"/api/jobs/{escape(quote(job_id, safe=''))}/logs.txt"
    counts = ", ".join(f"{escape(k)}: {n}" for k, n in sorted(logs.counts.items())) or "none"
    lines = "\n".join(
        f'<div class="lvl-{escape(x.level)}">{fmt_time(x.ts)} [{escape(x.level.upper())}] '
        f"{escape(x.party)}/{escape(x.step or '—')}: {escape(x.line)}</div>"
        for x in logs.lines
    )
    body = lines or '<div class="muted">No log lines yet.</div>'
    return f"""<p>Lines by level: {counts}. <a href="{href}" download>Download the log</a>
(the last {len(logs.lines)} lines are shown).</p>
<div class="logs" id="logs" tabindex="0" role="log" aria-label="Step logs">{body}</div>"""


def decisions_section(detail: JobDetail) -> str:
    """This party's decisions about the job's proposal, and while it waits for this party's
    operator, the approve and reject forms (posted to the dashboard, see ``approvals``)."""
    if not detail.decisions:
        return ""
    rows = "".join(
        f"<tr><td>{fmt_time(d.decided_at)}</td><td>{state_badge(d.decision)}</td>"
        f"<td>{escape(d.decided_by)}</td><td>{escape(d.rule)}</td>"
        f"<td>{escape(d.reason or '')}</td></tr>"
        for d in detail.decisions
    )
    forms = ""
    if detail.state == "pending_approval":
        href = job_href(detail.job_id)
        token = (
            '<label>API token <input type="password" name="token" autocomplete="off" '
            'maxlength="200"></label>'
        )
        forms = f"""<p>This job waits for this party's operator to approve it.</p>
<form class="bar" id="approve" method="post" action="{href}/approve">{token}
<button type="submit">Approve</button></form>
<form class="bar" id="reject" method="post" action="{href}/reject">{token}
<label>Reason <input name="reason" maxlength="500"></label>
<button type="submit">Reject</button></form>"""
    return f"""<h2>Decisions</h2>{forms}
<table><caption>This party's decisions about the proposal</caption><thead><tr>
<th scope="col">When</th><th scope="col">Decision</th><th scope="col">By</th>
<th scope="col">Rule</th><th scope="col">Reason</th></tr></thead><tbody>{rows}</tbody></table>"""


def job_section(
    detail: JobDetail, metrics: JobMetrics, analysis: JobAnalysis, logs: JobLogs
) -> str:
    return f"""{_summary(detail)}
{decisions_section(detail)}
<h2>Pipeline</h2>
{dag_svg(detail.steps, _party_ids(detail))}
{steps_table(detail)}
<h2>Model quality</h2>
<div class="charts">
{loss_chart(metrics)}
{roc_chart([analysis])}
{ks_chart([analysis])}
{gain_charts([analysis])}
</div>
{confusion_table(analysis)}
{importance_chart(analysis)}
{_metrics_table(metrics)}
<h2>Logs</h2>
{logs_view(detail.job_id, logs)}
<p class="muted">JSON: <a href="/api{job_href(detail.job_id)}/metrics">metrics</a>,
<a href="/api{job_href(detail.job_id)}/analysis">curves</a>.</p>"""


# --- comparison and task flow ----------------------------------------------------------------


def compare_controls(known: Sequence[str], chosen: Sequence[str]) -> str:
    options = "".join(
        f'<option value="{escape(j)}"{" selected" if j in chosen else ""}>{escape(j)}</option>'
        for j in known
    )
    return f"""<form class="bar" method="get" action="/compare">
<label>Jobs to compare (two or more)
<select name="jobs" multiple size="{min(8, max(2, len(known)))}">{options}</select></label>
<button type="submit">Compare</button></form>"""


def compare_section(analyses: Sequence[JobAnalysis], metrics: Sequence[JobMetrics]) -> str:
    if not analyses:
        return '<p class="muted">Choose two or more jobs above.</p>'
    rows = "".join(
        f'<tr><td><a href="{job_href(a.job_id)}">{escape(a.job_id)}</a></td>'
        f'<td class="num">{fmt_number(a.auc)}</td><td class="num">{fmt_number(a.ks)}</td></tr>'
        for a in analyses
    )
    loss = JobMetrics(
        job_id="",
        auc=None,
        ks=None,
        loss=[
            s.model_copy(update={"step": f"{m.job_id} · {s.step}"}) for m in metrics for s in m.loss
        ],
        series=[],
        scalars=[],
        curves=[],
        steps=[],
    )
    return f"""<table><caption>Jobs compared</caption><thead><tr><th scope="col">Job</th>
<th scope="col">AUC</th><th scope="col">KS</th></tr></thead><tbody>{rows}</tbody></table>
<div class="charts">
{roc_chart(analyses, by_job=True)}
{ks_chart(analyses, by_job=True)}
{loss_chart(loss)}
{gain_charts(analyses, by_job=True)}
</div>"""


def pipelines_section(pipelines: Pipelines) -> str:
    if not pipelines.jobs:
        return '<p class="muted">No jobs yet.</p>'
    rows = []
    for job in pipelines.jobs:
        steps = " → ".join(
            f'<span data-step="{escape(s.name)}">{state_badge(s.state)} {escape(s.name)}'
            f"{' (' + escape(s.component) + ')' if s.component else ''}</span>"
            for s in job.steps
        )
        rows.append(
            f'<tr><td><a href="{job_href(job.job_id)}">{escape(job.job_id)}</a></td>'
            f"<td>{state_badge(job.state)}</td><td>{steps or '—'}</td></tr>"
        )
    return f"""<table id="pipelines"><caption>Steps of each job, in pipeline order</caption>
<thead><tr><th scope="col">Job</th><th scope="col">State</th><th scope="col">Steps</th></tr>
</thead><tbody>{"".join(rows)}</tbody></table>"""


def not_found_fragment(job_id: str) -> str:
    return f'<p>No job <code>{escape(job_id)}</code> is known here. <a href="/">All jobs</a></p>'


def not_found(job_id: str, *, nonce: str) -> str:
    return page("Job not found", not_found_fragment(job_id), nonce=nonce, fragment_url=None)
