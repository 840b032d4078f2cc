"""An ASGI app served by uvicorn on 127.0.0.1, in a thread of the test process.

The socket is bound first (port 0: the kernel picks a free port, no race with other
tests), so that its URL is known before the app is built: a DiracX service needs
its own public URL in its settings, an OpenID Connect provider its issuer.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

HOST = "127.0.0.1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class LoopbackServer:
    """``url`` at once; ``start(app)`` serves *app* there until ``stop()``."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((HOST, 0))
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://{HOST}:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, app: Any) -> LoopbackServer:
        """Serve *app* (its lifespan included); returns once it accepts connections."""
        if self._server is not None:
            raise RuntimeError(f"{self.url} is already serving")
        config = uvicorn.Config(app, log_level="warning", lifespan="auto", access_log=False)
        server = self._server = uvicorn.Server(config)
        thread = self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [self._socket]}, name=f"loopback-{self.port}"
        )
        thread.daemon = True
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"the server on {self.url} stopped while starting")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server on {self.url} did not start in {START_TIMEOUT} s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving (the app's lifespan ends) and release the port."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(STOP_TIMEOUT)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(STOP_TIMEOUT)
        self._socket.close()

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
