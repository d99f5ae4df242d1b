"""The operator console's static files (console/, DESIGN.md section 12),
served under /console/ by the local gateway and by `make console`'s signing
proxy. Plain files, no build step: what is in the folder is what is served."""

from __future__ import annotations

import mimetypes
from http.server import BaseHTTPRequestHandler
from pathlib import Path

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
PREFIX = "/console"

# Strict defaults: the console talks to its own origin only (the API), runs
# only its own scripts, and is never framed.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}


def is_console(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def resolve(path: str, root: Path = CONSOLE_DIR) -> Path | None:
    """The file a /console/... path names, or None (missing, or outside the folder)."""
    relative = path[len(PREFIX):].lstrip("/") or "index.html"
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root.resolve()) or not candidate.is_file():
        return None
    return candidate


def serve(req: BaseHTTPRequestHandler, path: str) -> None:
    """Answer a GET or HEAD for a console path on `req`."""
    if req.command not in ("GET", "HEAD"):
        _send(req, 405, b"method not allowed", "text/plain; charset=utf-8")
        return
    if path == PREFIX:
        req.send_response(301)
        req.send_header("Location", PREFIX + "/")
        req.send_header("Content-Length", "0")
        req.end_headers()
        return
    file = resolve(path)
    if file is None:
        _send(req, 404, b"not found", "text/plain; charset=utf-8")
        return
    content_type = TYPES.get(file.suffix) or mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    _send(req, 200, file.read_bytes(), content_type)


def _send(req: BaseHTTPRequestHandler, status: int, data: bytes, content_type: str) -> None:
    req.send_response(status)
    req.send_header("Content-Type", content_type)
    for key, value in SECURITY_HEADERS.items():
        req.send_header(key, value)
    req.send_header("Content-Length", str(len(data)))
    req.end_headers()
    if req.command != "HEAD":
        req.wfile.write(data)
