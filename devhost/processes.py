"""More than one host process on one port and one data folder (``--processes N``).

One Python process runs Python code on one core at a time (the GIL). As the Functions platform
scales an app out to more instances, ``--processes N`` runs N complete hosts: the first binds the
port and starts the others with the listening socket, so each accepts connections from it.
They share the change feed's ranges through the leases (each process is one instance) and the
bus's queues as competing receivers; the embedded files' doorbells wake a process as soon as
another one writes what it waits for.

The first process stops the others when it stops; each of the others stops by itself when the
first one is gone (it is not left serving an orphaned port).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devhost.host import HostOptions

log = logging.getLogger("devhost")

_STOP_SECONDS = 30.0
_PARENT_CHECK_SECONDS = 0.5


def shared_listener(options: HostOptions) -> socket.socket | None:
    """The socket this process serves: for processes 2..N the first one's (and they stop
    when it is gone), for the first of several a new one (OSError when the address is taken),
    and None for a single process (uvicorn binds the port itself)."""
    if options.listen_fd is not None:
        stop_when_orphaned()
        return socket.socket(fileno=options.listen_fd)
    if options.processes > 1:
        return listen(options.host, options.port)
    return None


def listen(host: str, port: int) -> socket.socket:
    """The listening socket all processes accept from; OSError when the address is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


def child_arguments(options: HostOptions, number: int, fd: int) -> list[str]:
    """The command-line of process ``number`` (2..N): the first one's options, without the
    reset (done once, before) and with the inherited socket."""
    args = ["--port", str(options.port), "--host", options.host, "--backend", options.backend,
            "--app-dir", str(options.app_dir), "--lease-seconds", str(options.lease_seconds),
            "--max-request-bytes", str(options.limits.max_request_bytes),
            "--body-timeout", str(options.limits.body_timeout),
            "--header-timeout", str(options.limits.header_timeout),
            "--processes", str(options.processes), "--process-number", str(number),
            "--listen-fd", str(fd)]
    if options.data_dir is not None:
        args += ["--data-dir", str(options.data_dir)]
    if options.settings_path is not None:
        args += ["--settings", str(options.settings_path)]
    if options.accept_missing_data:
        args.append("--accept-missing-data")
    if options.instance_id is not None:
        args += ["--instance-id", f"{options.instance_id}-{number}"]
    return args


@dataclass
class OtherProcesses:
    """The processes 2..N the first one started, and what it says when one ends early."""

    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def start(cls, options: HostOptions, listener: socket.socket) -> OtherProcesses:
        others = cls()
        fd = listener.fileno()
        for number in range(2, options.processes + 1):
            command = [sys.executable, "-m", "devhost", *child_arguments(options, number, fd)]
            process = subprocess.Popen(command, pass_fds=(fd,))
            others.processes.append(process)
            threading.Thread(target=others._watch, args=(number, process),
                             name=f"process-{number}", daemon=True).start()
        return others

    def signal_stop(self) -> None:
        """Ask each to stop, as Ctrl-C would."""
        self._stopping.set()
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    def wait(self) -> None:
        """Wait for each to stop; one that does not stop in time is killed."""
        for process in self.processes:
            try:
                process.wait(timeout=_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                log.warning("host process %d did not stop in %gs; killed", process.pid,
                            _STOP_SECONDS)
                process.kill()
                process.wait()

    def _watch(self, number: int, process: subprocess.Popen[bytes]) -> None:
        code = process.wait()
        if not self._stopping.is_set():
            print(f"Host process {number} (pid {process.pid}) exited with code {code}; the "
                  "others go on, and take over its feed ranges when its leases expire.",
                  file=sys.stderr, flush=True)


def stop_when_orphaned() -> None:
    """In processes 2..N: stop (as on SIGTERM) once the first process is gone."""
    parent = os.getppid()

    def watch() -> None:
        stopped = threading.Event()
        while not stopped.wait(_PARENT_CHECK_SECONDS):
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def ignore_stop_signals(signals: Sequence[signal.Signals] = (signal.SIGINT, signal.SIGTERM)
                        ) -> None:
    """While a process stops: a second signal (Ctrl-C reaches every process of the terminal,
    and the first process also signals the others) must not cut its clean stop short."""
    for signum in signals:
        signal.signal(signum, signal.SIG_IGN)
