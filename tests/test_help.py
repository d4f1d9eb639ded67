"""Every command's --help reads well at 80 columns: whole sentences, units, defaults and
what each choice means, nothing cut off or broken at a hyphen, no `<bool>` on a flag."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from sidecar.cli import app

# typer's own copy of click: its classes are reached through the objects, not imported.
GROUP: Any = typer.main.get_command(app)
COMMANDS = sorted(GROUP.commands)
DURATION_S = {"closed_stream_ttl", "stream_idle_timeout", "shutdown_timeout"}


def render(*path: str) -> str:
    result = CliRunner().invoke(
        app, [*path, "--help"], env={"COLUMNS": "80"}, terminal_width=80, color=False
    )
    assert result.exit_code == 0, result.output
    return result.output


def options(command: Any) -> list[Any]:
    return [p for p in command.params if p.param_type_name == "option" and not p.hidden]


def sentence_problems(text: str) -> list[str]:
    """Why `text` is not whole sentences (empty when it is)."""
    text = " ".join(text.split())
    problems = []
    if not text:
        return ["no help text"]
    if not (text[0].isupper() or text[0].isdigit() or text.startswith("--")):
        problems.append(f"does not start a sentence: {text[:30]!r}")
    if not text.endswith((".", ".)")):
        problems.append(f"does not end a sentence: {text[-30:]!r}")
    return problems


@pytest.mark.parametrize("path", [(), *((c,) for c in COMMANDS)], ids=lambda p: " ".join(p))
def test_help_renders_at_80_columns(path: tuple[str, ...]) -> None:
    text = render(*path)
    for line in text.splitlines():
        assert len(line) <= 80, line
        assert not re.search(r"[A-Za-z]-$", line), f"a word broken at a hyphen: {line!r}"
        assert not line.rstrip().endswith(("…",)), f"cut off: {line!r}"
    assert "<bool>" not in text
    assert not set("│╭╰─") & set(text), "boxes do not survive a pipe or a narrow terminal"
    assert "Usage: " in text


def test_the_command_list_is_whole_sentences() -> None:
    text = render()
    listing = text.split("Commands:")[1].split("\n\n")[0]
    for line in listing.strip().splitlines():
        name, summary = line.split(None, 1)
        assert name in COMMANDS
        assert not summary.endswith("..."), f"{name}: summary cut off: {summary!r}"
        assert not sentence_problems(summary), (name, summary)
    assert "--version  Print the version." in text


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_says_what_its_unit_default_and_choices_are(name: str) -> None:
    command = GROUP.commands[name]
    assert not sentence_problems(command.help or ""), name
    text = " ".join(render(name).split())
    for opt in options(command):
        if opt.name == "help":
            continue
        flag = opt.opts[0]
        help_text = opt.help or ""
        assert not sentence_problems(help_text), (flag, sentence_problems(help_text))
        low = help_text.lower()
        shown = re.search(rf"(?<!\S){re.escape(flag)}(?: / \S+)?(?: <([^>]+)>)?", text)
        assert shown, f"{flag} is not in the rendered help"
        metavar = shown.group(1) or ""
        assert opt.name is not None
        if opt.name.endswith("_ms"):
            assert "millisecond" in low, f"{flag}: say the unit (milliseconds)"
        if opt.name.endswith("_bytes"):
            assert "bytes" in low, f"{flag}: say the unit (bytes)"
        if opt.name in DURATION_S or (metavar.startswith("float") and "timeout" in opt.name):
            assert "second" in low, f"{flag}: say the unit (seconds)"
        if opt.name == "socket_mode":
            assert "octal" in low, f"{flag}: say the mode is octal"
        if "|" in metavar:
            for choice in metavar.split("|"):
                assert re.search(rf"\b{re.escape(str(choice))}\b", help_text), (
                    f"{flag}: what does {choice!r} mean?"
                )
        if not opt.is_flag and not opt.required and opt.default is not None:
            # The default is shown (click prints it), so nobody has to guess it.
            assert f"{flag} " in text and "default:" in text.split(flag, 1)[1][:600], flag
