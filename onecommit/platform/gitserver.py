"""The kind profile's in-cluster git server: `git http-backend` (smart HTTP) behind a tiny server.

Argo CD resolves revisions with go-git, which speaks only git's smart HTTP protocol, so a static
file server is not enough. Read-only: `invoke up --profile kind` pushes into the bare repository
through `kubectl exec` (git's ext:: transport), never over HTTP.

    python -m onecommit.platform.gitserver --root /srv/git [--host 0.0.0.0] [--port 8080]
"""

from __future__ import annotations

import argparse
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from onecommit.commands import run


class GitHandler(BaseHTTPRequestHandler):
    root: Path  # set by serve()

    def do_GET(self) -> None:
        self._backend()

    def do_POST(self) -> None:
        self._backend()

    def _backend(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": url.path,
            "QUERY_STRING": url.query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        # A CGI environment: only these variables, none of the server's.
        result = run(["git", "http-backend"], input=body, env=env, replace_env=True,
                     timeout_s=300, check=False, text=False)
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").splitlines()
        headers = [line.split(":", 1) for line in lines if ":" in line]
        status = next((int(v.split()[0]) for k, v in headers if k.lower() == "status"), 200)
        self.send_response(status if result.returncode == 0 else 500)
        for key, value in headers:
            if key.lower() != "status":
                self.send_header(key, value.strip())
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def serve(root: Path, host: str, port: int) -> None:
    handler = type("Handler", (GitHandler,), {"root": root})
    ThreadingHTTPServer((host, port), handler).serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m onecommit.platform.gitserver")
    parser.add_argument("--root", type=Path, required=True, help="directory of bare repositories")
    # All interfaces by default: it is the Pod's port behind a ClusterIP Service.
    parser.add_argument("--host", default="0.0.0.0")  # noqa: S104
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    serve(args.root, args.host, args.port)


if __name__ == "__main__":
    main()
