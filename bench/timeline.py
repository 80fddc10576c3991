"""Render a bring-up's timeline from Pulumi's engine event log: a Gantt chart by host, critical path marked.

Usage: .venv/bin/python bench/timeline.py EVENTS.jsonl STATE.json OUT_PREFIX
  EVENTS.jsonl  the engine's events: `pulumi up --json > EVENTS.jsonl` (or `--event-log` where the CLI has it)
  STATE.json    `pulumi stack export` after that up (for the dependency edges)
Writes OUT_PREFIX.png (if matplotlib is installed), OUT_PREFIX.html and OUT_PREFIX.txt.
"""
from __future__ import annotations

import html
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional


@dataclass
class Span:
    urn: str
    name: str
    type: str
    op: str
    start: float
    end: float
    deps: set[str] = field(default_factory=set)
    critical: bool = False

    @property
    def group(self) -> str:
        """The host a resource belongs to (controller-N), or the kind of cluster-wide work."""
        match = re.search(r"controller-\d+", self.name)
        if match:
            return match.group(0)
        if self.type.startswith("tls:") or self.type.startswith("random:"):
            return "pki"
        return "cluster"

    @property
    def seconds(self) -> float:
        return self.end - self.start


def _timestamp(event: dict) -> float:
    # Newer engines stamp events in seconds with a fraction; older ones in whole seconds.
    return float(event.get("timestamp", 0))


def spans_from_events(lines: Iterable[str]) -> dict[str, Span]:
    """Each resource step's start (resourcePreEvent) and end (resOutputsEvent / resOpFailedEvent)."""
    spans: dict[str, Span] = {}
    for line in lines:
        if not line.strip().startswith("{"):
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        for kind in ("resourcePreEvent", "resOutputsEvent", "resOpFailedEvent"):
            body = event.get(kind)
            if not body:
                continue
            meta = body["metadata"]
            urn, op = meta["urn"], meta.get("op", "")
            # Components (kthw:*) only group their children; the stack and providers are not work.
            if meta.get("type", "").startswith(("pulumi:", "kthw:")) or op in ("same", "read", "refresh"):
                continue
            t = _timestamp(event)
            if kind == "resourcePreEvent":
                spans[urn] = Span(urn, urn.rsplit("::", 1)[-1], meta.get("type", ""), op, t, t)
            elif urn in spans:
                spans[urn].end = t
    return spans


def add_dependencies(spans: dict[str, Span], state: dict) -> None:
    for resource in state.get("deployment", {}).get("resources", []):
        span = spans.get(resource["urn"])
        if span:
            deps = set(resource.get("dependencies", []))
            for urns in (resource.get("propertyDependencies") or {}).values():
                deps.update(urns)
            span.deps = deps & set(spans)


def mark_critical_path(spans: dict[str, Span]) -> list[Span]:
    """From the last resource to finish, walk back through the dependency that finished last."""
    if not spans:
        return []
    current: Optional[Span] = max(spans.values(), key=lambda s: s.end)
    path = []
    while current is not None:
        current.critical = True
        path.append(current)
        deps = [spans[d] for d in current.deps]
        current = max(deps, key=lambda s: s.end) if deps else None
    return list(reversed(path))


def text_report(spans: dict[str, Span], path: list[Span]) -> str:
    t0 = min(s.start for s in spans.values())
    total = max(s.end for s in spans.values()) - t0
    lines = [f"{len(spans)} resources, {total:.0f} s from first start to last end", "",
             f"{'group':14}{'start':>7}{'secs':>7}  resource"]
    for s in sorted(spans.values(), key=lambda s: (s.group, s.start)):
        lines.append(f"{s.group:14}{s.start - t0:>7.0f}{s.seconds:>7.0f}  {'*' if s.critical else ' '} {s.name}")
    lines += ["", "critical path (* above):"] + [f"  {s.start - t0:>5.0f}+{s.seconds:<4.0f} {s.name}" for s in path]
    return "\n".join(lines) + "\n"


def html_report(spans: dict[str, Span]) -> str:
    t0 = min(s.start for s in spans.values())
    total = max(max(s.end for s in spans.values()) - t0, 1)
    rows = []
    for s in sorted(spans.values(), key=lambda s: (s.group, s.start)):
        left, width = 100 * (s.start - t0) / total, max(100 * s.seconds / total, 0.3)
        color = "#d62728" if s.critical else "#1f77b4"
        rows.append(f"<tr><td>{html.escape(s.group)}</td><td>{html.escape(s.name)}</td><td>{s.seconds:.0f}s</td>"
                    f"<td style='width:60%'><div style='margin-left:{left:.2f}%;width:{width:.2f}%;"
                    f"background:{color};height:12px'></div></td></tr>")
    return ("<html><body><h3>kthw bring-up timeline (red: critical path)</h3><table style='font:12px monospace'>"
            + "".join(rows) + "</table></body></html>\n")


def png_report(spans: dict[str, Span], out: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    t0 = min(s.start for s in spans.values())
    ordered = sorted(spans.values(), key=lambda s: (s.group, s.start))
    fig, ax = plt.subplots(figsize=(14, max(4, 0.22 * len(ordered))))
    groups = sorted({s.group for s in ordered})
    palette = {g: plt.cm.tab10(i % 10) for i, g in enumerate(groups)}
    for y, s in enumerate(ordered):
        ax.barh(y, max(s.seconds, 0.3), left=s.start - t0, color=palette[s.group],
                edgecolor="red" if s.critical else "none", linewidth=2 if s.critical else 0)
    ax.set_yticks(range(len(ordered)))
    ax.set_yticklabels([f"{s.name}{' *' if s.critical else ''}" for s in ordered], fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the first resource started")
    ax.set_title("kthw bring-up (colour: host / group; red outline and *: critical path)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=palette[g]) for g in groups]
    ax.legend(handles, groups, loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def render(events: Path, state: Path, prefix: Path) -> dict[str, float]:
    spans = spans_from_events(events.read_text().splitlines())
    add_dependencies(spans, json.loads(state.read_text()))
    path = mark_critical_path(spans)
    prefix.with_suffix(".txt").write_text(text_report(spans, path))
    prefix.with_suffix(".html").write_text(html_report(spans))
    png_report(spans, prefix.with_suffix(".png"))
    t0 = min(s.start for s in spans.values())
    return {"resources": len(spans), "seconds": max(s.end for s in spans.values()) - t0,
            "critical_path": [s.name for s in path]}


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    print(json.dumps(render(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])), indent=2))
