#!/usr/bin/env python3
"""Test-only smart-HTTP git server: `git http-backend` as CGI on 127.0.0.1.

Used by the GitSource tests (Tests/GitSourceTests/Support/GitHTTPServer.swift).
Standard library only. It is NOT a production server: it binds loopback only,
serves read-only (upload-pack), and exists so tests can prove that fetching
over HTTP, with and without basic auth, works against real git.

Usage:
  git-http-server.py --root DIR --port-file FILE --stats-file FILE [--user NAME]

The password for --user is read from the environment variable
LOCKSTEP_TEST_HTTP_PASSWORD so it never shows up in `ps` output.

Readiness: the listening socket is bound (port 0: the kernel picks a free
port) before the port is written to --port-file, via a rename, so a reader
never sees a half-written file.

Statistics: --stats-file holds JSON {"requests": N, "unauthorized": M}. It is
rewritten (atomically) BEFORE the response that changes it is sent, so once a
client has finished, the file already counts everything that client caused.
"""

import argparse
import base64
import hmac
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

# Request bodies above this are refused: a test never needs more, and an
# unbounded read would let a broken client eat the machine's memory.
MAX_BODY = 256 * 1024 * 1024


def write_atomically(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class Stats:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.requests = 0
        self.unauthorized = 0
        self.flush_locked()

    def flush_locked(self):
        write_atomically(
            self.path,
            json.dumps({"requests": self.requests, "unauthorized": self.unauthorized}),
        )

    def count(self, unauthorized):
        with self.lock:
            self.requests += 1
            if unauthorized:
                self.unauthorized += 1
            self.flush_locked()


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 with a Content-Length on every response keeps connections
    # alive, so benchmarks measure git, not TCP set-up.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle's algorithm on, the
    # second one waits for the client's delayed ACK (about 40 ms), which made
    # every small response of the git CLI's two-request exchange that slow.
    disable_nagle_algorithm = True
    server_version = "lockstep-test-git-http"

    def log_message(self, fmt, *args):
        # Request lines may carry credentials in odd clients; keep the log terse
        # and free of headers.
        sys.stderr.write("%s %s\n" % (self.command, self.path.split("?", 1)[0]))

    def do_GET(self):
        self.handle_git()

    def do_POST(self):
        self.handle_git()

    def authorized(self):
        cfg = self.server.auth
        if cfg is None:
            return True, ""
        user, password = cfg
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False, ""
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return False, ""
        given_user, sep, given_password = decoded.partition(":")
        if not sep:
            return False, ""
        ok = hmac.compare_digest(given_user.encode(), user.encode()) and hmac.compare_digest(
            given_password.encode(), password.encode()
        )
        return ok, given_user if ok else ""

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            total = 0
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # Trailers end with an empty line.
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY:
                    raise ValueError("body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)  # CRLF after each chunk
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length", "0") or "0")
        if length > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(length) if length > 0 else b""

    def send_plain(self, code, text, extra=()):
        body = text.encode()
        self.send_response(code)
        for k, v in extra:
            self.send_header(k, v)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_git(self):
        ok, remote_user = self.authorized()
        if not ok:
            # Drain the body so the connection stays usable for the retry.
            try:
                self.read_body()
            except ValueError:
                self.close_connection = True
            self.server.stats.count(unauthorized=True)
            self.send_plain(401, "unauthorized\n", [("WWW-Authenticate", 'Basic realm="lockstep-test"')])
            return
        self.server.stats.count(unauthorized=False)
        try:
            body = self.read_body()
        except ValueError:
            self.close_connection = True
            self.send_plain(413, "body too large\n")
            return

        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": self.server.root,
            "GIT_PROJECT_ROOT": self.server.root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": unquote(path),
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_USER": remote_user,
        }
        # git http-backend inflates gzip request bodies itself when told so.
        encoding = self.headers.get("Content-Encoding")
        if encoding:
            env["HTTP_CONTENT_ENCODING"] = encoding
        protocol = self.headers.get("Git-Protocol")
        if protocol:
            env["GIT_PROTOCOL"] = protocol
            env["HTTP_GIT_PROTOCOL"] = protocol
        proc = subprocess.run(
            ["git", "http-backend"], input=body, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        if proc.stderr:
            sys.stderr.write(proc.stderr.decode("utf-8", "replace"))
        self.send_cgi_output(proc.stdout)

    def send_cgi_output(self, out):
        sep = out.find(b"\r\n\r\n")
        sep_len = 4
        lf = out.find(b"\n\n")
        if sep < 0 or (0 <= lf < sep):
            sep, sep_len = lf, 2
        if sep < 0:
            self.send_plain(502, "bad CGI output\n")
            return
        head, payload = out[:sep].decode("latin-1"), out[sep + sep_len :]
        status, reason = 200, "OK"
        headers = []
        for line in head.splitlines():
            name, _, value = line.partition(":")
            value = value.strip()
            if name.lower() == "status":
                code, _, reason = value.partition(" ")
                status = int(code)
            elif name.lower() != "content-length":
                headers.append((name, value))
        self.send_response(status, reason or None)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--stats-file", required=True)
    parser.add_argument("--user")
    args = parser.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.root = os.path.abspath(args.root)
    server.stats = Stats(args.stats_file)
    server.auth = None
    if args.user is not None:
        password = os.environ.get("LOCKSTEP_TEST_HTTP_PASSWORD")
        if password is None:
            sys.exit("--user needs LOCKSTEP_TEST_HTTP_PASSWORD in the environment")
        server.auth = (args.user, password)
    write_atomically(args.port_file, str(server.server_address[1]))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
