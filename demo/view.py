"""What the demo prints: a live table on a terminal, plain lines anywhere else.

`Screen` wraps one rich Console. On a terminal, `live()` redraws the stream table four
times a second while the agents stream; not on a terminal (CI, a pipe), rich writes no
escape codes, and `live()` prints one progress line a second instead of a table.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from demo.agents import StreamRow

_STATE_STYLE = {"waiting": "dim", "streaming": "yellow", "sent": "cyan", "acked": "green"}


class Screen:
    def __init__(self, *, record: bool = False) -> None:
        self.console = Console(highlight=False, record=record)
        if not self.console.is_terminal:
            self.console.width = 100  # a log or CI page: tables need not fit 80 columns
        self.started = time.monotonic()

    @property
    def interactive(self) -> bool:
        return self.console.is_terminal

    def step(self, message: str) -> None:
        """One line of progress, with the time since the demo started."""
        took = time.monotonic() - self.started
        self.console.print(
            f"[dim]{took:5.1f}s[/dim] [bold]==>[/bold] {message}", soft_wrap=not self.interactive
        )

    def print(self, *objects: Any) -> None:
        # A terminal wraps text to its width; a log or CI page gets each line whole.
        # Tables are laid out to the console's width either way.
        whole = not self.interactive and not any(isinstance(o, Table) for o in objects)
        self.console.print(*objects, soft_wrap=whole)

    @contextlib.contextmanager
    def live(
        self, render: Callable[[], Any], plain: Callable[[], str]
    ) -> Iterator[Callable[[], None]]:
        """Show `render()` live (a terminal) or `plain()` once a second (otherwise); yields
        a `tick()` for the caller to call as often as it likes."""
        if self.interactive:
            # Recorded (for --svg) once, as it ends, not at every refresh.
            recording, self.console.record = self.console.record, False
            with Live(render(), console=self.console, refresh_per_second=4, transient=True) as live:
                yield lambda: live.update(render())
            self.console.record = recording
            self.console.print(render())
            return
        last = [0.0]

        def tick() -> None:
            now = time.monotonic()
            if now - last[0] >= 1.0:
                last[0] = now
                self.step(plain())

        yield tick
        self.step(plain())


def stream_table(rows: list[StreamRow], header: str) -> Group:
    table = Table(title=None, expand=False, pad_edge=False, box=None, header_style="bold")
    table.add_column("agent")
    table.add_column("stream")
    table.add_column("deltas written", justify="right")
    table.add_column("records in Kafka", justify="right")
    table.add_column("state")
    for r in rows:
        style = _STATE_STYLE.get(r.state, "red")
        table.add_row(r.agent, r.message, str(r.deltas), str(r.records), Text(r.state, style))
    return Group(Text.from_markup(header), table)


def fmt_ms(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:.1f} ms"
