"""Accuracy-versus-latency plots with the Pareto front marked (demo summary, benchmarks/summary.py)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (lower-or-equal latency and higher-or-equal accuracy,
    strictly better in one), sorted by latency. ``points`` are ``(latency, accuracy)``."""
    front = []
    for i, (lat, acc) in enumerate(points):
        dominated = any((l2 <= lat and a2 >= acc) and (l2 < lat or a2 > acc) for j, (l2, a2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def plot_accuracy_latency(labels: Sequence[str], latency_ms: Sequence[float], accuracy: Sequence[float],
                          path: str | os.PathLike, title: str, xlabel: str = "latency (ms, onnxruntime, 1 thread)",
                          ylabel: str = "verification accuracy", groups: Sequence[str] | None = None) -> Path:
    """Scatter of the networks, the Pareto front as a line, each point labelled; saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = list(zip(map(float, latency_ms), map(float, accuracy)))
    front = pareto_front(pts)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups = list(groups) if groups is not None else ["network"] * len(pts)
    for g in dict.fromkeys(groups):
        idx = [i for i, gi in enumerate(groups) if gi == g]
        ax.scatter([pts[i][0] for i in idx], [pts[i][1] for i in idx], label=g, zorder=3)
    ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "k--", lw=1, zorder=2)
    ax.scatter([pts[i][0] for i in front], [pts[i][1] for i in front], s=160, facecolors="none", edgecolors="k",
               label="Pareto front", zorder=4)
    for i, label in enumerate(labels):
        ax.annotate(label, pts[i], textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_runtime_fronts(panels: Mapping[str, Sequence[Mapping[str, Any]]], path: str | os.PathLike, title: str,
                        ylabel: str = "verification accuracy") -> Path:
    """One panel per runtime, side by side: each group's networks and that group's Pareto front.

    ``panels``: ``{runtime label: [{"label", "group", "latency_ms", "accuracy"}, ...]}`` (e.g. the
    hand-designed references and the searched networks, each timed in that runtime).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(5.5 * max(len(panels), 1), 4.5), squeeze=False)
    groups = list(dict.fromkeys(p["group"] for pts in panels.values() for p in pts))
    colours = {g: f"C{i}" for i, g in enumerate(groups)}
    for ax, (runtime, pts) in zip(axes[0], panels.items()):
        for g in groups:
            mine = [p for p in pts if p["group"] == g]
            if not mine:
                continue
            xy = [(float(p["latency_ms"]), float(p["accuracy"])) for p in mine]
            ax.scatter([x for x, _ in xy], [y for _, y in xy], color=colours[g], label=g, zorder=3)
            front = pareto_front(xy)
            ax.plot([xy[i][0] for i in front], [xy[i][1] for i in front], "--", color=colours[g], lw=1, zorder=2)
            below = groups.index(g) % 2 == 1  # the second group's labels go under its points: fewer overlaps
            for p, (x, y) in zip(mine, xy):
                ax.annotate(str(p["label"]), (x, y), textcoords="offset points", xytext=(4, -11 if below else 4),
                            fontsize=8, color=colours[g] if below else "black")
        ax.margins(x=0.1, y=0.1)  # room for the labels at the edges
        ax.set_xlabel(f"latency (ms, {runtime}, batch 1, 1 thread)")
        ax.set_ylabel(ylabel)
        ax.set_title(runtime)
        ax.grid(alpha=0.3)
        if pts:
            ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    fig.suptitle(title)
    return _save(fig, path)


def _save(fig: Any, path: str | os.PathLike) -> Path:
    """Lay out, write (creating the folder) and close a figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
