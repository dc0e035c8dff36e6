"""What the benchmarks share (paths, percentiles, memory, an app): imported by run, scale, peer and
cluster, importing none of them, so no two bench modules import each other."""

from __future__ import annotations

import resource
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


def median_spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def rss_mb() -> float:
    """Current resident memory (ru_maxrss would carry the parent's peak across exec on Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_app(instance: Path, backend: str):  # type: ignore[no-untyped-def]
    from server import create_app

    return create_app({"INSTANCE_PATH": str(instance), "EMBED_BACKEND": backend})


def write_section(path: Path, lines: list[str]) -> None:
    """Replace the section whose heading is lines[1] in ``path`` (or add it after the HTTP figures)."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    heading = lines[1]
    section = "\n".join(lines[1:]) + "\n"
    if heading in text:
        start = text.index(heading)
        after = text.find("\n## ", start + len(heading))
        text = text[:start] + section + (text[after + 1:] if after >= 0 else "")
    else:
        anchor = text.find("\n## Build")
        text = text[:anchor + 1] + section + "\n" + text[anchor + 1:] if anchor >= 0 else text + "\n" + section
    path.write_text(text, encoding="utf-8")
