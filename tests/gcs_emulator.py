"""A local Google Cloud Storage for the tests, offline: gcp-storage-emulator,
patched where it departs from GCS, behind a TLS-terminating HTTPS proxy.

  python tests/gcs_emulator.py --bucket B --certdir DIR

prints one JSON line {"emulator_port": E, "proxy_port": P} once it listens,
and exits when its standard input closes. It listens on 127.0.0.1 only.

Why the proxy: TensorStore (Orbax's arrays) and google-cloud-storage take
the emulator's URL (TENSORSTORE_GCS_HTTP_URL, STORAGE_EMULATOR_HOST), but
TensorFlow's GCS file system, which etils.epath, tf.summary, clu and TFDS
use for gs://, has https://www.googleapis.com and storage.googleapis.com
compiled in. It does honour HTTPS_PROXY and CURL_CA_BUNDLE, so the proxy
accepts CONNECTs to *.googleapis.com only, terminates TLS with a test
certificate (DIR/leaf.pem, signed by DIR/ca.pem) and forwards to the
emulator.

The patches, each for something TensorFlow or TensorStore needs and the
emulator (2026.7.19) gets wrong: empty uploads, chunked uploads that also
carry Content-Length, `Expect: 100-continue`, the x-goog-generation header,
ifGenerationMatch preconditions, the storageLayout endpoint, compose
requests without a destination or with single-quoted JSON, and serving one
request at a time.
"""
import argparse
import ast
import json
import os
import re
import select
import socket
import ssl
import sys
import threading
import time
from http import HTTPStatus, server

from gcp_storage_emulator import server as emu_server
from gcp_storage_emulator.handlers import objects

# ---------------------------------------------------------------- patches


def _gen_ok(request, obj):
    """Honours ifGenerationMatch / ifGenerationNotMatch. Returns HTTP status or None."""
    q = request.query
    cur = None if obj is None else int(obj["generation"])
    if "ifGenerationMatch" in q:
        want = int(q["ifGenerationMatch"][0])
        if (want == 0 and cur is not None) or (want != 0 and cur != want):
            return HTTPStatus.PRECONDITION_FAILED
    if "ifGenerationNotMatch" in q and cur is not None:
        if cur == int(q["ifGenerationNotMatch"][0]):
            return HTTPStatus.NOT_MODIFIED
    return None


def _lookup(storage, bucket, name):
    try:
        return storage.get_file_obj(bucket, name)
    except Exception:
        return None


def _wrap_read(orig):
    def handler(request, response, storage, *a, **kw):
        obj = _lookup(storage, request.params["bucket_name"], request.params["object_id"])
        st = _gen_ok(request, obj)
        if st is not None:
            response.status = st
            return
        orig(request, response, storage, *a, **kw)
        if obj is not None and response.status in (HTTPStatus.OK, HTTPStatus.PARTIAL_CONTENT):
            # tensorstore takes the generation of a media read from these headers.
            response["x-goog-generation"] = str(obj["generation"])
            response["x-goog-metageneration"] = str(obj.get("metageneration", "1"))
    return handler


def _wrap_write(orig):
    def handler(request, response, storage, *a, **kw):
        name = request.query.get("name", [None])[0] or request.params.get("object_id")
        if name and "upload_id" not in request.query:
            st = _gen_ok(request, _lookup(storage, request.params["bucket_name"], name))
            if st is not None:
                response.status = st
                return
        return orig(request, response, storage, *a, **kw)
    return handler


def _compose_defaults(orig):
    def handler(request, response, storage, *a, **kw):
        if isinstance(request.data, dict):
            request.data.setdefault("destination", {})  # optional in real GCS
        return orig(request, response, storage, *a, **kw)
    return handler


def _storage_layout(request, response, storage, *a, **kw):
    # TF's gcs_file_system asks this before renaming a "directory" (HNS check).
    response.json({"kind": "storage#storageLayout", "bucket": request.params["bucket_name"],
                   "location": "US", "locationType": "multi-region",
                   "hierarchicalNamespace": {"enabled": False}})


def _empty_body_ok(orig):
    # Emulator bug: an upload with an empty body (TF's "dir/" marker objects,
    # zero-length files) crashes with len(None) -> connection dropped.
    def handler(request, response, storage, *a, **kw):
        if request.data is None:
            request._data = b""
        return orig(request, response, storage, *a, **kw)
    return handler


objects._media_upload = _empty_body_ok(objects._media_upload)

_PATCHED = {objects.get: _wrap_read(objects.get), objects.download: _wrap_read(objects.download),
            objects.delete: _wrap_write(objects.delete), objects.insert: _wrap_write(objects.insert),
            objects.xml_upload: _empty_body_ok(objects.xml_upload),
            objects.compose: _compose_defaults(objects.compose)}
_handlers = []
for regex, methods in emu_server.HANDLERS:
    _handlers.append((regex, {m: _PATCHED.get(h, h) for m, h in methods.items()}))
_handlers.insert(0, (r"^/storage/v1/b/(?P<bucket_name>[-.\w]+)/storageLayout$",
                 {"GET": _storage_layout}))
emu_server.HANDLERS = tuple(_handlers)

_orig_req_init = emu_server.Request.__init__


def _req_init(self, handler, method):
    _orig_req_init(self, handler, method)
    host = handler.headers.get("Host", "")
    if host.endswith("googleapis.com"):  # came through the TLS proxy
        self._base_url = "https://" + host
        self._full_url = self._base_url + self._path


emu_server.Request.__init__ = _req_init

_orig_read_raw = emu_server._read_raw_data


def _read_raw_data(h):
    # Emulator bug: TF's curl PUT sends BOTH "Content-Length: N" and
    # "Transfer-Encoding: chunked"; HTTP says chunked wins, the emulator used
    # Content-Length and stored the chunk framing ("8\r\nhello tf" -> "8\r\nhello").
    if (h.headers.get("Transfer-Encoding") or "").lower() == "chunked":
        parts = []  # (list + join: the emulator's own "+=" loop is quadratic)
        while True:
            size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            parts.append(h.rfile.read(size))
            h.rfile.readline()
    return _orig_read_raw(h)


emu_server._read_raw_data = _read_raw_data
_orig_read_data = emu_server._read_data


def _read_data(h, query):
    # TF's compose-append sends single-quoted pseudo-JSON ({'sourceObjects': ...}),
    # which real GCS accepts and json.loads rejects.
    ct = h.headers.get("Content-Type") or ""
    if ct.startswith("application/json") and "upload_id" not in query:
        raw = emu_server._decode_raw_data(_read_raw_data(h), h)
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return ast.literal_eval(raw.decode())
    return _orig_read_data(h, query)


emu_server._read_data = _read_data
emu_server.RequestHandler.disable_nagle_algorithm = True  # else ~40-80 ms per request

# Emulator speaks HTTP/1.0, so it never answers "Expect: 100-continue" and curl
# (TF uploads, tensorstore bodies > 1 MiB) stalls 1 s per request. Speak
# HTTP/1.1 (so 100 Continue is sent) but still close after every response.
emu_server.RequestHandler.protocol_version = "HTTP/1.1"
_orig_close = emu_server.Response.close


def _resp_close(self):
    self["Connection"] = "close"
    return _orig_close(self)


emu_server.Response.close = _resp_close

_lock = threading.Lock()
_orig_handle = emu_server.Router.handle


def _handle(self, method):
    h = self._request_handler
    t0 = time.time()
    with _lock:  # the emulator's storage is not thread-safe
        try:
            return _orig_handle(self, method)
        finally:
            if os.environ.get("FAKE_GCS_DEBUG"):
                sys.stderr.write("REQ %.3f %.3fs %s %s %s\n" % (
                    t0, time.time() - t0, method, h.headers.get("Host"), h.path))


emu_server.Router.handle = _handle


class _ThreadingServer(server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def _api_run(self):
    self._httpd = _ThreadingServer((self._host, self._port),
                                   emu_server.partial(emu_server.RequestHandler, self._storage))
    self.is_running.set()
    self._httpd.serve_forever()


emu_server.APIThread.run = _api_run

# ---------------------------------------------------------------- TLS proxy


def _pipe(a, b):
    socks = [a, b]
    try:
        while True:
            # SSL sockets may hold decrypted bytes that select() cannot see.
            ready = [s for s in socks if isinstance(s, ssl.SSLSocket) and s.pending()]
            if not ready:
                ready, _, _ = select.select(socks, [], [], 300)
                if not ready:
                    return
            for s in ready:
                data = s.recv(65536)
                if not data:
                    return
                (b if s is a else a).sendall(data)
    except (OSError, ssl.SSLError):
        pass
    finally:
        for s in socks:
            try:
                s.close()
            except OSError:
                pass


def _proxy_conn(conn, ctx, emu_port):
    try:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                conn.close()
                return
            head += chunk
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        m = re.match(r"CONNECT ([\w.-]+):443 HTTP/1\.[01]$", line)
        if not m or not m.group(1).endswith("googleapis.com"):
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            conn.close()
            return
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls = ctx.wrap_socket(conn, server_side=True)
        upstream = socket.create_connection(("127.0.0.1", emu_port))
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _pipe(tls, upstream)
    except (OSError, ssl.SSLError):
        try:
            conn.close()
        except OSError:
            pass


def start_proxy(emu_port, certdir):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(certdir, "leaf.pem"), os.path.join(certdir, "leaf.key"))
    ctx.set_alpn_protocols(["http/1.1"])
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(128)

    def loop():
        while True:
            c, _ = lsock.accept()
            threading.Thread(target=_proxy_conn, args=(c, ctx, emu_port), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return lsock.getsockname()[1]


def main():
    import logging
    # the emulator logs every 404 ("Resource not found:") at ERROR level
    logging.basicConfig(level=logging.INFO if os.environ.get("FAKE_GCS_DEBUG") else logging.CRITICAL)
    ap = argparse.ArgumentParser()
    ap.add_argument("--bucket", action="append", default=[])
    ap.add_argument("--certdir")
    args = ap.parse_args()
    srv = emu_server.create_server("127.0.0.1", 0, in_memory=True,
                                   default_bucket=args.bucket[0] if args.bucket else None)
    srv.start()
    for b in args.bucket[1:]:
        emu_server.buckets.create_bucket(b, srv._storage)
    emu_port = srv._api._httpd.server_address[1]
    proxy_port = start_proxy(emu_port, args.certdir) if args.certdir else None
    print(json.dumps({"emulator_port": emu_port, "proxy_port": proxy_port}), flush=True)
    try:
        sys.stdin.read()  # exit when the parent closes our stdin / dies
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
