"""Render a benchmark result (bench/results/latest.json) into charts and the README table.

    python -m bench.report [RESULT.json] [--charts docs/bench] [--readme README.md]

Writes three PNG charts (each under 200 KB) into `--charts`: throughput (the sidecar in a
burst and per token against the naive one-send-per-delta producer and kcat), the
sidecar's CPU per delta at an LLM's pace, and the first-delta latency distribution; then
replaces what lies between `<!-- bench:begin -->` and `<!-- bench:end -->` in the README
with a table of every figure, the machine and the versions. Everything shown comes from
the JSON (schema 1, written by bench/run.py); nothing is typed in by hand.
matplotlib is a development dependency (the `test` extra), not the wheel's.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RESULT = ROOT / "bench" / "results" / "latest.json"
DEFAULT_CHARTS = ROOT / "docs" / "bench"
DEFAULT_README = ROOT / "README.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
MAX_CHART_BYTES = 200 * 1024
CHARTS = ("throughput.png", "cpu_per_delta.png", "first_delta_latency.png")

_SIDECAR, _BASELINE, _SATURATED = "#1f77b4", "#9a9a9a", "#d62728"


class ReportError(Exception):
    """The result file cannot be rendered: the message names what is wrong."""


def load(path: Path) -> dict[str, Any]:
    try:
        doc = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise ReportError(f"{path}: not found (run `make bench` first)") from None
    except orjson.JSONDecodeError as e:
        raise ReportError(f"{path}: not JSON ({e})") from None
    validate(doc)
    return doc  # type: ignore[no-any-return]


def validate(doc: Any) -> None:
    """Check the parts of schema 1 that the report reads; name the first thing missing."""
    if not isinstance(doc, dict) or doc.get("schema") != 1:
        raise ReportError('expected a JSON object with "schema": 1')
    for key in ("created", "machine", "versions", "throughput", "paced"):
        if key not in doc:
            raise ReportError(f'missing "{key}"')
    for i, t in enumerate(doc["throughput"]):
        for key in ("name", "kind", "deltas_per_s", "deltas", "records"):
            if key not in t:
                raise ReportError(f'throughput[{i}]: missing "{key}"')
        if t["kind"] not in ("sidecar", "baseline"):
            raise ReportError(f'throughput[{i}]: kind must be "sidecar" or "baseline"')
    for i, p in enumerate(doc["paced"]):
        for key in ("name", "streams", "rate_per_stream", "cpu_us_per_delta", "first_delta_ms"):
            if key not in p:
                raise ReportError(f'paced[{i}]: missing "{key}"')
    if not doc["throughput"] and not doc["paced"]:
        raise ReportError("no throughput and no paced results: nothing to show")


# Charts -------------------------------------------------------------------------------


def _figure(height: float) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")  # files only; never a display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, height), dpi=100)
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def _formatter(fmt: str) -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: fmt.format(v))


def _save(fig: Any, path: Path, footer: str) -> Path:
    import matplotlib.pyplot as plt

    fig.text(0.01, 0.01, footer, fontsize=7, color="#666666")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    if path.stat().st_size > MAX_CHART_BYTES:
        raise ReportError(f"{path}: {path.stat().st_size} bytes, over {MAX_CHART_BYTES}")
    return path


def _footer(doc: dict[str, Any]) -> str:
    m, v = doc["machine"], doc["versions"]
    return (
        f"{doc['created']} · {m.get('cpus', '?')} CPUs {m.get('cpu_model', '')} · "
        f"sidecar {v.get('sidecar', '?')}, Python {v.get('python', '?')}, "
        f"Kafka {v.get('kafka', '?')}"
    )


def chart_throughput(doc: dict[str, Any], path: Path) -> Path:
    rows = sorted(doc["throughput"], key=lambda t: t["deltas_per_s"])
    fig, ax = _figure(0.6 * len(rows) + 1.6)
    names = [t["name"] for t in rows]
    values = [t["deltas_per_s"] for t in rows]
    colours = [_SIDECAR if t["kind"] == "sidecar" else _BASELINE for t in rows]
    bars = ax.barh(names, values, color=colours)
    top = max(values, default=0) or 1
    for bar, t in zip(bars, rows, strict=True):
        per = t["records"] / t["deltas"] if t["deltas"] else 0
        ax.text(
            bar.get_width() + top * 0.01,
            bar.get_y() + bar.get_height() / 2,
            f"{t['deltas_per_s']:,.0f}/s  ({per:.3g} records/delta)",
            va="center",
            fontsize=8,
        )
    ax.set_xlim(0, top * 1.45)
    ax.xaxis.set_major_formatter(_formatter("{:,.0f}"))
    ax.set_xlabel("deltas per second, end to end (written -> acknowledged by Kafka)")
    ax.set_title("Throughput: the sidecar against the baselines (blue: sidecar)")
    return _save(fig, path, _footer(doc))


def _paced_label(p: dict[str, Any]) -> str:
    shape = f"{p['streams']:,} x {p['rate_per_stream']:g}/s"
    # A name that already says its shape (bench/run.py's do) is not told it twice.
    said = str(p["streams"]) in p["name"] or f"{p['streams']:,}" in p["name"]
    return p["name"] if said else f"{p['name']}\n{shape}"


def chart_cpu(doc: dict[str, Any], path: Path) -> Path:
    rows = doc["paced"]
    fig, ax = _figure(3.6)
    labels = [_paced_label(p) for p in rows]
    values = [p["cpu_us_per_delta"] for p in rows]
    colours = [_SATURATED if p.get("saturated") else _SIDECAR for p in rows]
    bars = ax.bar(labels, values, color=colours)
    for bar, p in zip(bars, rows, strict=True):
        note = " (saturated)" if p.get("saturated") else ""
        ax.annotate(
            f"{p['cpu_us_per_delta']:.1f} µs{note}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_ylim(0, (max(values, default=0) or 1) * 1.2)
    ax.set_ylabel("sidecar CPU per delta (µs)")
    ax.set_title("Sidecar CPU per delta at an LLM's pace (streams x deltas/s each)")
    ax.tick_params(axis="x", labelsize=8)
    return _save(fig, path, _footer(doc))


def chart_latency(doc: dict[str, Any], path: Path) -> Path:
    fig, ax = _figure(3.8)
    drawn = 0
    for p in doc["paced"]:
        samples = sorted(p.get("first_delta_samples_ms") or [])
        if not samples:
            continue
        n = len(samples)
        ys = [(i + 1) / n for i in range(n)]
        q = p["first_delta_ms"]
        ax.step(
            samples,
            ys,
            where="post",
            label=f"{_paced_label(p).replace(chr(10), ', ')}: p50 {q['p50']:.1f} ms, "
            f"p99 {q['p99']:.1f} ms (n={n:,})",
        )
        drawn += 1
    if not drawn:
        ax.text(0.5, 0.5, "no latency samples in this result", ha="center", transform=ax.transAxes)
    else:
        ax.legend(fontsize=7, loc="lower right")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(_formatter("{:g}"))
        ax.xaxis.set_minor_formatter(_formatter("{:g}"))
        ax.tick_params(axis="x", which="minor", labelsize=7)
    for y in (0.5, 0.99):
        ax.axhline(y, color="#bbbbbb", linewidth=0.6, linestyle="--")
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("first-delta latency, ms (the agent's write -> the record's Kafka CreateTime)")
    ax.set_ylabel("share of streams")
    ax.set_title("First-delta latency distribution (cumulative)")
    return _save(fig, path, _footer(doc))


def render_charts(doc: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    return [
        chart_throughput(doc, out / CHARTS[0]),
        chart_cpu(doc, out / CHARTS[1]),
        chart_latency(doc, out / CHARTS[2]),
    ]


# README table ---------------------------------------------------------------------------


def _num(v: float, digits: int = 0) -> str:
    return f"{v:,.{digits}f}"


def readme_section(doc: dict[str, Any], charts: Sequence[str]) -> str:
    m, v = doc["machine"], doc["versions"]
    lines = [
        f"Measured {doc['created']} on {m.get('cpus', '?')} CPUs ({m.get('cpu_model', '?')}), "
        f"{m.get('mem_gib', '?')} GiB, {m.get('os', '?')}; sidecar {v.get('sidecar', '?')}, "
        f"Python {v.get('python', '?')}{_build(v)}, aiokafka {v.get('aiokafka', '?')}, "
        f"Kafka {v.get('kafka', '?')}, kcat {v.get('kcat') or 'not installed'}. "
        "Regenerated by `make bench` (`python -m bench.report` renders this from "
        "`bench/results/latest.json`).",
    ]
    settings = doc.get("settings") or {}
    if settings:
        lines += ["", "Settings: " + "; ".join(f"{k} {v}" for k, v in settings.items()) + "."]
    lines += [
        "",
        "| throughput | kind | deltas/s | deltas | records | records per delta |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for t in doc["throughput"]:
        per = t["records"] / t["deltas"] if t["deltas"] else 0.0
        spread = _spread(t.get("runs"))  # several runs: the median, and their range
        lines.append(
            f"| {t['name']} | {t['kind']} | **{_num(t['deltas_per_s'])}**{spread} | "
            f"{_num(t['deltas'])} | {_num(t['records'])} | {per:.4f} |"
        )
    lines += [
        "",
        "| paced | streams x deltas/s | CPU per delta, median (range) | wake-ups/s (deltas each) "
        "| first delta p50 | p90 | p99 | max | terminal ack p50 | p99 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in doc["paced"]:
        q = p["first_delta_ms"]
        sat = " (saturated)" if p.get("saturated") else ""
        lines.append(
            f"| {p['name']}{sat} | {_num(p['streams'])} x {p['rate_per_stream']:g} | "
            f"{p['cpu_us_per_delta']:.1f} µs{_spread(p.get('cpu_us_per_delta_runs'), 1)} | "
            f"{_wakeups(p)} | **{q['p50']:.2f} ms** | "
            f"{q['p90']:.2f} ms | {q['p99']:.2f} ms | {q['max']:.2f} ms | "
            f"{_ack(p, 'p50')} | {_ack(p, 'p99')} |"
        )
    idle = doc.get("idle")
    if idle:
        lines += [
            "",
            f"Idle: {_num(idle['streams'])} open streams with nothing pending for "
            f"{idle['seconds']:g} s cost the sidecar **{idle['cpu_percent']:.2f}%** of a CPU.",
        ]
    if charts:
        lines.append("")
        lines += [f"![{Path(c).stem.replace('_', ' ')}]({c})" for c in charts]
    return "\n".join(lines)


def replace_section(text: str, section: str) -> str:
    begin, end = text.find(BEGIN), text.find(END)
    if begin < 0 or end < begin:
        raise ReportError(f"the README has no {BEGIN} ... {END} section")
    return text[: begin + len(BEGIN)] + "\n" + section + "\n" + text[end:]


def report(result: Path, charts_dir: Path, readme: Path | None) -> list[Path]:
    doc = load(result)
    paths = render_charts(doc, charts_dir)
    if readme is not None:
        rel = [p.resolve().relative_to(readme.resolve().parent).as_posix() for p in paths]
        readme.write_text(replace_section(readme.read_text(), readme_section(doc, rel)))
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n")[0])
    ap.add_argument("result", nargs="?", type=Path, default=DEFAULT_RESULT)
    ap.add_argument("--charts", type=Path, default=DEFAULT_CHARTS, help="folder for the PNGs")
    ap.add_argument("--readme", type=Path, default=DEFAULT_README, help="README to update")
    ap.add_argument("--no-readme", action="store_true", help="render the charts only")
    args = ap.parse_args(argv)
    try:
        paths = report(args.result, args.charts, None if args.no_readme else args.readme)
    except ReportError as e:
        print(f"bench.report: {e}", file=sys.stderr)
        return 2
    for p in paths:
        print(f"wrote {p} ({p.stat().st_size // 1024} KB)")
    return 0


def _ack(paced: dict[str, Any], q: str) -> str:
    """A terminal-ack percentile of a paced phase ("-" in results from before it was kept)."""
    ack = paced.get("terminal_ack_ms")
    return f"{ack[q]:.2f} ms" if ack else "-"


def _wakeups(paced: dict[str, Any]) -> str:
    """The sidecar's wake-ups a second in a paced phase and the deltas each found ("-" in
    results from before they were counted)."""
    per_s = paced.get("wakeups_per_s")
    if per_s is None:
        return "-"
    return f"{_num(per_s)} ({paced.get('deltas_per_wakeup', 0):g})"


def _build(versions: dict[str, Any]) -> str:
    exe = versions.get("python_executable")
    return f" (`{exe}`)" if exe else ""


def _spread(runs: Sequence[float] | None, digits: int = 0) -> str:
    """The range of a figure over its runs (the cell shows their median); "" for one."""
    return (
        f" ({_num(min(runs), digits)}-{_num(max(runs), digits)})" if runs and len(runs) > 1 else ""
    )


if __name__ == "__main__":
    raise SystemExit(main())
