"""A TCP proxy in front of a real server (PostgreSQL here), for fault tests: forward, cut every
connection (and refuse new ones for a while), freeze (accept and hold, forward nothing), or cut
one connection at a chosen point of the client's stream (e.g. at the COMMIT that follows a
statement the test names), before or after that point reaches the server."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass


@dataclass
class Trap:
    """Cut the connection whose client sends `after` and then `at`: before `at` reaches the server
    (`forward=False`) or right after it does, before the server's answer reaches the client."""

    after: bytes
    at: bytes
    forward: bool
    sprung: bool = False


class Proxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.frozen = threading.Event()
        self.refusing = threading.Event()
        self.trap: Trap | None = None
        self.lock = threading.Lock()
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.closed = False
        threading.Thread(target=self._accept, name="proxy", daemon=True).start()

    # -- faults -------------------------------------------------------------------------------------

    def cut(self, refuse_for: float = 0.0) -> None:
        """Close every connection now; refuse new ones for `refuse_for` seconds."""
        if refuse_for:
            self.refusing.set()
            threading.Timer(refuse_for, self.refusing.clear).start()
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for sock in pair:
                _close(sock)

    def freeze(self) -> None:
        """Keep every connection open and forward nothing, in either direction, until `thaw`."""
        self.frozen.set()

    def thaw(self) -> None:
        self.frozen.clear()

    def set_trap(self, trap: Trap) -> Trap:
        self.trap = trap
        return trap

    def close(self) -> None:
        self.closed = True
        _close(self.listener)
        self.cut()

    # -- forwarding ---------------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refusing.is_set():
                _close(client)
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self.lock:
                self.pairs.append((client, server))
            seen, mute = bytearray(), threading.Event()
            threading.Thread(target=self._pipe, args=(client, server, seen, mute, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, seen, mute, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, seen: bytearray, mute: threading.Event,
              upstream: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                while self.frozen.is_set() and not self.closed:
                    time.sleep(0.02)
                trap = self.trap
                if upstream and trap is not None and not trap.sprung:
                    seen.extend(data)
                    del seen[:-200_000]
                    start = seen.find(trap.after)
                    if start >= 0 and seen.find(trap.at, start + len(trap.after)) >= 0:
                        trap.sprung = True
                        mute.set()  # from here on the server's answers never reach the client
                        if trap.forward:
                            sink.sendall(data)
                            time.sleep(0.3)  # the server commits
                        self._drop(source, sink)
                        return
                if not upstream and mute.is_set():
                    continue
                sink.sendall(data)
        except OSError:
            pass
        self._drop(source, sink)

    def _drop(self, a: socket.socket, b: socket.socket) -> None:
        with self.lock:
            self.pairs = [p for p in self.pairs if a not in p and b not in p]
        _close(a)
        _close(b)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
