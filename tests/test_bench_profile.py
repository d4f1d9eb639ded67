"""bench/profile.py folds py-spy's native stacks into stages: waits are idle, system calls
are the kernel's share, the rest goes to the innermost frame of a known stage."""

from __future__ import annotations

from pathlib import Path

from bench.profile import fold, stage_of

RUN = "Runner.run (asyncio/runners.py:118);run_until_complete (loop.c:35410)"


def test_a_wait_in_epoll_is_idle_and_a_system_call_is_the_kernels() -> None:
    assert stage_of(f"{RUN};epoll_pwait (libc.so.6)")[0] == "idle"
    write = f"{RUN};AIOKafkaConnection.send (aiokafka/conn.py:430);write (libc.so.6)"
    assert stage_of(write)[0] == "system calls"


def test_native_frames_count_for_the_innermost_known_python_frame() -> None:
    stack = f"{RUN};decode_frame (sidecar_client/protocol/frames.py:116);0x7f (orjson.so)"
    assert stage_of(stack) == ("decode", "decode_frame (sidecar_client/protocol/frames.py:116)")
    assert stage_of(f"{RUN};Py_DECREF (object.h:537)")[0] == "event loop"


def test_fold_leaves_idle_samples_out(tmp_path: Path) -> None:
    raw = tmp_path / "stacks.txt"
    raw.write_text(
        f"{RUN};epoll_pwait (libc.so.6) 70\n"
        f"{RUN};StreamTable.handle (sidecar/transform/table.py:158) 20\n"
        f"{RUN};read (libc.so.6) 10\n"
    )
    stages, _ = fold(raw)
    assert dict(stages) == {"coalesce": 20, "system calls": 10}
