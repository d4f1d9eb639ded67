"""bench/report.py renders a bench result (schema 1) into charts and the README table."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.report import BEGIN, CHARTS, END, MAX_CHART_BYTES, main, readme_section


def result() -> dict[str, Any]:
    rng = random.Random(7)
    samples = [rng.lognormvariate(2.0, 0.3) for _ in range(2000)]
    return {
        "schema": 1,
        "created": "2026-11-29T15:00:00Z",
        "machine": {"cpus": 2, "cpu_model": "Test CPU", "mem_gib": 23.4, "os": "Linux 6"},
        "versions": {
            "sidecar": "0.1.0",
            "python": "3.11.7",
            "aiokafka": "0.14.0",
            "kafka": "4.1.1",
            "kcat": None,
        },
        "settings": {"flush_interval_ms": 50},
        "throughput": [
            {
                "name": "sidecar, burst",
                "kind": "sidecar",
                "deltas_per_s": 65460.2,
                "deltas": 100000,
                "records": 6550,
            },
            {
                "name": "sidecar, per token",
                "kind": "sidecar",
                "deltas_per_s": 31000.0,
                "deltas": 50000,
                "records": 50000,
            },
            {
                "name": "naive one send per delta",
                "kind": "baseline",
                "deltas_per_s": 4321.9,
                "deltas": 20000,
                "records": 20000,
            },
            {
                "name": "kcat lines",
                "kind": "baseline",
                "deltas_per_s": 99000.0,
                "deltas": 100000,
                "records": 100000,
            },
        ],
        "paced": [
            {
                "name": "LLM pace",
                "streams": 200,
                "rate_per_stream": 40.0,
                "cpu_us_per_delta": 23.5,
                "cpu_us_per_delta_runs": [25.0, 23.5, 21.25],
                "wakeups_per_s": 431,
                "deltas_per_wakeup": 18.6,
                "saturated": False,
                "first_delta_ms": {"p50": 6.92, "p90": 9.1, "p99": 10.79, "max": 14.2},
                "first_delta_samples_ms": samples,
                "terminal_ack_ms": {"p50": 3.25, "p99": 7.5},
            },
            {
                "name": "many streams",
                "streams": 2000,
                "rate_per_stream": 20.0,
                "cpu_us_per_delta": 41.0,
                "saturated": True,
                "first_delta_ms": {"p50": 12.0, "p90": 30.0, "p99": 55.5, "max": 80.0},
                "first_delta_samples_ms": [s * 2 for s in samples],
            },
        ],
        "idle": {"streams": 10000, "seconds": 10.0, "cpu_percent": 0.04},
    }


def write(tmp_path: Path, doc: Any) -> tuple[Path, Path]:
    path = tmp_path / "latest.json"
    path.write_bytes(orjson.dumps(doc))
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n\n{BEGIN}\nold table\n{END}\n\nafter\n")
    return path, readme


def test_renders_charts_and_the_readme_table(tmp_path: Path) -> None:
    path, readme = write(tmp_path, result())
    charts = tmp_path / "docs" / "bench"
    assert main([str(path), "--charts", str(charts), "--readme", str(readme)]) == 0

    import matplotlib.image

    for name in CHARTS:
        png = charts / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert 5_000 < png.stat().st_size < MAX_CHART_BYTES
        height, width, _ = matplotlib.image.imread(png).shape
        assert width == 800 and height > 200

    text = readme.read_text()
    assert text.startswith("# x\n\nbefore\n\n" + BEGIN + "\n")
    assert text.endswith(END + "\n\nafter\n")
    assert "old table" not in text
    # Every figure of the result is in the table, as the JSON says.
    for figure in (
        "| sidecar, burst | sidecar | **65,460** | 100,000 | 6,550 | 0.0655 |",
        "| naive one send per delta | baseline | **4,322** | 20,000 | 20,000 | 1.0000 |",
        "| LLM pace | 200 x 40 | 23.5 µs (21.2-25.0) | 431 (18.6) | **6.92 ms** | 9.10 ms "
        "| 10.79 ms | 14.20 ms | 3.25 ms | 7.50 ms |",
        # A result from before wake-ups and terminal acks were kept renders dashes.
        "| many streams (saturated) | 2,000 x 20 | 41.0 µs | - | **12.00 ms** |",
        "| 80.00 ms | - | - |",
        "10,000 open streams with nothing pending for 10 s cost the sidecar **0.04%**",
        "kcat not installed",
        "Settings: flush_interval_ms 50.",
        "![throughput](docs/bench/throughput.png)",
        "![first delta latency](docs/bench/first_delta_latency.png)",
    ):
        assert figure in text

    # Rendering again gives the same README (the section is replaced, not appended).
    assert main([str(path), "--charts", str(charts), "--readme", str(readme)]) == 0
    assert readme.read_text() == text


def test_runs_as_a_module(tmp_path: Path) -> None:
    """`make bench` runs it as `python -m bench.report`: every helper must exist by then."""
    path, readme = write(tmp_path, result())
    args = [str(path), "--charts", str(tmp_path / "charts"), "--readme", str(readme)]
    done = subprocess.run(
        [sys.executable, "-m", "bench.report", *args],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "| 3.25 ms | 7.50 ms |" in readme.read_text()


def test_the_table_follows_the_data() -> None:
    doc = result()
    doc["throughput"][0]["deltas_per_s"] = 12345.6
    doc["idle"] = None
    section = readme_section(doc, [])
    assert "**12,346**" in section
    assert "Idle:" not in section


def test_a_throughput_of_several_runs_shows_their_range() -> None:
    doc = result()
    doc["throughput"][1].update(deltas_per_s=95540, runs=[86509, 95540, 105465])
    section = readme_section(doc, [])
    assert "**95,540** (86,509-105,465)" in section
    assert "**65,460** |" in section  # one run: no range


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(schema=2), '"schema": 1'),
        (lambda d: d.pop("machine"), 'missing "machine"'),
        (lambda d: d["throughput"][1].pop("records"), 'throughput[1]: missing "records"'),
        (lambda d: d["throughput"][0].update(kind="other"), "throughput[0]: kind"),
        (lambda d: d["paced"][0].pop("first_delta_ms"), 'paced[0]: missing "first_delta_ms"'),
        (lambda d: d.update(throughput=[], paced=[]), "nothing to show"),
    ],
)
def test_a_bad_result_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mutate: Any, message: str
) -> None:
    doc = result()
    mutate(doc)
    path, readme = write(tmp_path, doc)
    before = readme.read_text()
    assert main([str(path), "--charts", str(tmp_path / "c"), "--readme", str(readme)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert readme.read_text() == before


def test_missing_result_and_missing_markers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "none.json"), "--no-readme"]) == 2
    assert "run `make bench` first" in capsys.readouterr().err
    path, readme = write(tmp_path, result())
    readme.write_text("# no markers\n")
    assert main([str(path), "--charts", str(tmp_path / "c"), "--readme", str(readme)]) == 2
    assert BEGIN in capsys.readouterr().err


def test_the_readme_has_the_generated_section() -> None:
    from bench.report import DEFAULT_README

    text = DEFAULT_README.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert text.index(BEGIN) < text.index(END)
