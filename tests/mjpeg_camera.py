"""A network camera for tests: an endless multipart JPEG (MJPEG) stream over HTTP on loopback,
which OpenCV/FFmpeg open like any IP camera; ``unplug()`` cuts it, ``start(port)`` plugs it back."""
from __future__ import annotations

import itertools
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        try:
            for i in itertools.count():
                if self.server.cut.is_set():
                    return
                jpg = self.server.jpeg(i)
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                 % len(jpg) + jpg + b"\r\n")
                time.sleep(self.server.period)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


class MjpegCamera:
    def __init__(self, jpeg: Callable[[int], bytes], period: float = 0.05, port: int = 0):
        """``jpeg(i)``: the encoded i-th frame; ``period``: seconds between frames."""
        self._srv = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self._srv.daemon_threads = True
        self._srv.cut = threading.Event()
        self._srv.jpeg, self._srv.period = jpeg, period
        self.port = self._srv.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/stream.mjpg"
        threading.Thread(target=self._srv.serve_forever, daemon=True).start()

    def unplug(self) -> None:
        self._srv.cut.set()
        self._srv.shutdown()
        self._srv.server_close()

    def replug(self) -> "MjpegCamera":
        """The same camera back on the same port."""
        return MjpegCamera(self._srv.jpeg, self._srv.period, self.port)
