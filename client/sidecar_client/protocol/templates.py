"""Decoding a stream's next delta line without parsing all of it again, sans-IO.

An agent's delta lines for one stream are the same bytes but for their text: the same
`parent_task_message`, delta type, channel fields and `index`. `FrameDecoder` keeps, for
a delta line that `decode_frame` accepted, a template: the bytes before its text literal
(the prefix, which holds the ids), the bytes after it (the suffix), and what the full
decode found. A later line with the same prefix and suffix is that same object with
another string in the text slot, so only the string literal between them is parsed.

Why that is exact. Inside a JSON string every `"` is escaped, so the bytes `_delta":"`
(every text field of the delta table ends in `_delta`) only occur where a key ending in
`_delta` is followed by a string value. A template is only kept after a probe proves
that the first such slot is the text field: the prefix and suffix around another string
decode to the same object with that string as the text. JSON's grammar does not look
inside a string literal, so any string literal in that slot gives the same object with
that text, and the same verdict on everything else `decode_frame` checks (ids, index,
channel, duplicate keys: the keys are the prefix's and suffix's). The literal must parse
as exactly one JSON string (orjson rejects what is not: invalid UTF-8, a raw control
character, a bad escape, anything after the closing quote but whitespace); if it does
not, or anything else differs, the line takes `decode_frame`, which says what is wrong.

A template is learnt from the second line with its prefix (a stream's second delta), so
a stream's first delta costs no more than before and a stream of one delta holds none.
Bounded: at most `max_templates` templates, each of a line of at most `max_line_bytes`
with at most `max_keys` keys and `max_containers` objects or arrays (so that its decoded
objects stay small); `held` estimates their bytes. A full table is emptied and refilled
by the streams still writing.
"""

from __future__ import annotations

from typing import Any

import orjson

from sidecar_client.protocol.frames import DELTA_TYPES, decode_frame
from sidecar_client.protocol.model import Hello, Update

# Where a text field's string value starts (its opening quote is the last byte).
_MARK = b'_delta":"'
_START = len(_MARK) - 1
assert all(spec.text_field.endswith("_delta") for spec in DELTA_TYPES.values())

# What a template holds, estimated (tests/protocol/test_templates.py measures it): the
# entry, its tuple and prefix, plus the decoded objects, which cost about twice the line
# and a dict slot or object per key and container.
TEMPLATE_BYTES = 1000
PER_KEY_BYTES = 64
SEEN_BYTES = 72  # a prefix's hash seen once: an int and its set slot


def template_cost(line: bytes, keys: int, containers: int) -> int:
    return TEMPLATE_BYTES + 2 * len(line) + PER_KEY_BYTES * (keys + containers)


_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError

# (task_id, message_id, channel, text_field, body, suffix, cost): what decode_frame found
# for the line the template was learned from, the bytes after its text literal, and its
# estimated bytes.
_Template = tuple[str, str, tuple[Any, ...] | None, str, dict[str, Any], bytes, int]


class FrameDecoder:
    """`decode_frame` with a template cache for delta lines: same results, same errors."""

    def __init__(
        self,
        *,
        max_templates: int = 2048,
        max_line_bytes: int = 512,
        max_keys: int = 24,
        max_containers: int = 8,
    ) -> None:
        self.max_templates = max_templates
        self.max_line_bytes = max_line_bytes
        self.max_keys = max_keys
        self.max_containers = max_containers
        self._templates: dict[bytes, _Template] = {}
        # Hashes of prefixes seen once, not yet learnt (at most max_templates ints).
        self._seen: set[int] = set()
        self._held = 0  # estimated bytes of the templates (template_cost)
        self.hits = 0  # lines decoded from a template (diagnostics and tests)

    def __len__(self) -> int:
        return len(self._templates)

    @property
    def held(self) -> int:
        """Estimated bytes held: the templates, and the hashes of prefixes seen once."""
        return self._held + SEEN_BYTES * len(self._seen)

    def decode(self, line: bytes) -> Update | Hello:
        """Decode one line (without its newline); raise `FrameError` if it is rejected."""
        mark = line.find(_MARK)
        if mark >= 0:
            start = mark + _START
            prefix = line[:start]
            template = self._templates.get(prefix)
            if template is not None:
                suffix = template[5]
                end = len(line) - len(suffix)
                if line.endswith(suffix):
                    try:
                        text = _loads(line[start:end])
                    except _JSONDecodeError:
                        text = None
                    if type(text) is str:
                        self.hits += 1
                        task_id, message_id, channel, field, body, _, _ = template
                        # Fresh top-level and delta objects carrying this line's text;
                        # nested objects (the parent message) are shared, read-only.
                        body = dict(body)
                        delta = dict(body["delta"])
                        delta[field] = text
                        body["delta"] = delta
                        return Update(
                            "delta", task_id, message_id, body, line, channel, field, text
                        )
        frame = decode_frame(line)
        if mark >= 0 and type(frame) is Update and frame.text_field is not None:
            # Learnt from a prefix's second line: a stream's first delta (the one someone
            # waits for) pays nothing more, and a stream of one delta holds no template.
            seen = self._seen
            key = hash(prefix)
            if key in seen:
                seen.discard(key)
                self._learn(frame, line, start)
            else:
                if len(seen) >= self.max_templates:
                    seen.clear()
                seen.add(key)
        return frame

    def _learn(self, update: Update, line: bytes, start: int) -> None:
        """Keep a template of `line` if its first `..._delta":"` slot is the text field."""
        if len(line) > self.max_line_bytes:
            return
        keys = line.count(b":")
        containers = line.count(b"{") + line.count(b"[")
        if keys > self.max_keys or containers > self.max_containers:
            return
        end = _literal_end(line, start)
        if end < 0:
            return
        prefix, suffix = line[:start], line[end:]
        field = update.text_field
        assert field is not None
        sentinel = "\x01" if update.text == "\x00" else "\x00"
        try:
            probe = _loads(prefix + orjson.dumps(sentinel) + suffix)
        except _JSONDecodeError:
            return
        delta = probe.get("delta") if type(probe) is dict else None
        if type(delta) is not dict or delta.get(field) != sentinel:
            return
        delta[field] = update.text
        if probe != update.body:
            return
        templates = self._templates
        if len(templates) >= self.max_templates:
            templates.clear()
            self._held = 0
        cost = template_cost(line, keys, containers)
        old = templates.get(prefix)  # the same prefix with another suffix: replaced
        self._held += cost - (old[6] if old is not None else 0)
        # The probe's objects, not the update's: what the caller does with its update
        # cannot reach the template.
        templates[prefix] = (
            update.task_id,
            update.message_id,
            update.channel,
            field,
            probe,
            suffix,
            cost,
        )


def _literal_end(line: bytes, start: int) -> int:
    """The index just past the JSON string literal whose opening quote is at `start`
    (-1 if it does not close)."""
    at = start + 1
    while True:
        at = line.find(b'"', at)
        if at < 0:
            return -1
        backslashes = 0
        while line[at - 1 - backslashes] == 0x5C:
            backslashes += 1
        if backslashes % 2 == 0:
            return at + 1
        at += 1
