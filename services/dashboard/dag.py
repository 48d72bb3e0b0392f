"""The pipeline DAG as inline SVG: one box per step, each party's state in it (pure).

Dependencies come from the pipeline the flow_server announces in ``job.status``; until that is
seen, a step follows the one declared before it, so the job still draws as a chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Final

from dashboard.schemas import StepOut

STATE_MARKS: Final = {
    "success": "✓",
    "failed": "✗",
    "running": "▶",
    "canceled": "■",
    "waiting": "…",
    "pending": "…",
    "—": "·",  # the step does not run on that party
}
BOX_W, BOX_H, GAP_X, GAP_Y, LINE_H = 170, 44, 46, 16, 16


def state_mark(state: str) -> str:
    return STATE_MARKS.get(state, "?")


def _edges(steps: Sequence[StepOut]) -> list[tuple[str, str]]:
    names = {s.name for s in steps}
    edges: list[tuple[str, str]] = []
    for i, step in enumerate(steps):
        deps = [d for d in step.depends if d in names]
        if not deps and step.component is None and i > 0:
            deps = [steps[i - 1].name]
        edges += [(d, step.name) for d in deps]
    return edges


def _layers(steps: Sequence[StepOut], edges: list[tuple[str, str]]) -> dict[str, int]:
    layer: dict[str, int] = {}
    for step in steps:  # declared order is a topological order
        parents = [a for a, b in edges if b == step.name]
        layer[step.name] = 1 + max((layer.get(p, 0) for p in parents), default=-1)
    return layer


def dag_svg(steps: Sequence[StepOut], parties: Sequence[str]) -> str:
    if not steps:
        return '<p class="muted">No steps reported yet.</p>'
    edges = _edges(steps)
    layer = _layers(steps, edges)
    box_h = BOX_H + LINE_H * len(parties)
    rows: dict[int, int] = {}
    pos: dict[str, tuple[float, float]] = {}
    for step in steps:
        col = layer[step.name]
        row = rows.get(col, 0)
        rows[col] = row + 1
        pos[step.name] = (8 + col * (BOX_W + GAP_X), 8 + row * (box_h + GAP_Y))
    width = 16 + (max(layer.values()) + 1) * (BOX_W + GAP_X) - GAP_X
    height = 16 + max(rows.values()) * (box_h + GAP_Y) - GAP_Y
    parts = [
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" class="arrow"/></marker>'
        "</defs>"
    ]
    for a, b in edges:
        (ax, ay), (bx, by) = pos[a], pos[b]
        parts.append(
            f'<line x1="{ax + BOX_W}" y1="{ay + box_h / 2}" x2="{bx}" y2="{by + box_h / 2}" '
            'class="edge" marker-end="url(#arrow)"/>'
        )
    for step in steps:
        x, y = pos[step.name]
        by_party = {t.party: t.state for t in step.tasks}
        lines = [
            f'<text x="{x + 10}" y="{y + 18}" class="node-title">'
            f"{state_mark(step.state)} {escape(step.name)}</text>",
            f'<text x="{x + 10}" y="{y + 34}" class="muted-text">'
            f"{escape(step.component or '')} {escape(step.state)}</text>",
        ]
        for i, party in enumerate(parties):
            state = by_party.get(party, "—")
            lines.append(
                f'<text x="{x + 10}" y="{y + BOX_H + 6 + i * LINE_H}" '
                f'data-party="{escape(party)}" data-state="{escape(state)}">'
                f"{state_mark(state)} {escape(party)}: {escape(state)}</text>"
            )
        parts.append(
            f'<g class="node node-{escape(step.state)}" data-step="{escape(step.name)}" '
            f'data-state="{escape(step.state)}"><rect x="{x}" y="{y}" width="{BOX_W}" '
            f'height="{box_h}" rx="6"/><rect x="{x}" y="{y}" width="5" height="{box_h}" '
            f'class="stripe"/>{"".join(lines)}</g>'
        )
    return f"""<figure class="dag">
<svg role="img" aria-label="Pipeline DAG: {len(steps)} steps; the steps table below lists the same"
 width="{width}" height="{height}" viewBox="0 0 {width} {height}"
 xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg></figure>"""
