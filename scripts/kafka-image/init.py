#!/usr/bin/python3
"""PID 1 of the local Kafka image: run the command, pass SIGTERM/SIGINT to every other
process in the container, and exit only once all of them are gone.

testcontainers' KafkaContainer runs `sh -c "...; sh /tc-start.sh"` as the command, and
a shell as PID 1 ignores SIGTERM, so every `docker stop` waited out its whole timeout
before SIGKILL (20 s per stop in the test bed). Here the shells die at once on SIGTERM,
the broker gets it too and shuts down cleanly, and as PID 1 this process adopts and reaps
the broker after its shell parents are gone, so the container ends when the broker has.
"""

import contextlib
import os
import signal
import subprocess
import sys


def forward(signum: int, _frame: object) -> None:
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            with contextlib.suppress(ProcessLookupError):  # gone meanwhile
                os.kill(int(entry), signum)


def main() -> int:
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    child = subprocess.Popen(sys.argv[1:] or ["/etc/confluent/docker/run"])
    code = 0
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return code
        if pid == child.pid:
            code = os.waitstatus_to_exitcode(status)
            code = 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main())
