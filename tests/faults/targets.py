#!/usr/bin/env python3
"""Well- and ill-behaved loopback targets for the fault-injection suite.

Usage: targets.py MODE [MODE ...]
Listens on 127.0.0.1 with one port per MODE and a control port, all chosen by
the kernel, prints {"MODE": port, ..., "control": port} as one JSON line, then
serves until terminated (one asyncio loop, so thousands of connections cost
no threads).

Modes:
  ok       HTTP: 200 for every path, except paths whose last segment was
           switched down (POST /switch on the control port), which get 503;
           every request is counted and time-stamped per path
  accept   TCP: accepts, waits for the client to close
  hang     accepts and reads, never answers
  reset    accepts and resets the connection at once (RST)
  drip     sends "HTTP/1.1 200 OK..." one byte per second
  garbage  sends random bytes that are not HTTP, then closes
  bigcl    HTTP 200 declaring a 5 GiB Content-Length, then body bytes as fast
           as the client reads, until it goes away
  endless  HTTP 200 without Content-Length, body bytes until the client goes away

For hang, drip, bigcl and endless each connection's lifetime (accept until the
client closed it) and bytes sent are recorded. Control port:
  GET  /stats    JSON: per mode connections, open, max_lifetime, lifetimes over
                 1 s, max_bytes; per ok path hits and time stamps (monotonic)
  POST /switch   {"ids": [...], "down": true|false}
  POST /reset    forget hits and time stamps
"""

import asyncio
import json
import os
import socket
import struct
import sys
import time

BIG = 5 * 1024 ** 3
CHUNK = b"x" * 65536


class Stats:
    def __init__(self):
        self.connections = 0
        self.open = 0
        self.max_lifetime = 0.0
        self.lifetimes_over_1s = 0
        self.max_bytes = 0
        self.total_bytes = 0
        self.aborted = 0  # closed by the client before a whole request arrived

    def as_dict(self):
        return dict(connections=self.connections, open=self.open,
                    max_lifetime=round(self.max_lifetime, 4),
                    lifetimes_over_1s=self.lifetimes_over_1s,
                    max_bytes=self.max_bytes, total_bytes=self.total_bytes,
                    aborted=self.aborted)


stats = {}
hits = {}      # path -> count
times = {}     # path -> [monotonic seconds]
down = set()   # last path segments answered with 503


async def read_head(reader, limit=65536):
    data = b""
    while b"\r\n\r\n" not in data and len(data) < limit:
        chunk = await reader.read(4096)
        if not chunk:
            return None
        data += chunk
    return data


def finish(st, started, sent):
    life = time.monotonic() - started
    st.open -= 1
    st.max_lifetime = max(st.max_lifetime, life)
    if life > 1.0:
        st.lifetimes_over_1s += 1
    st.max_bytes = max(st.max_bytes, sent)
    st.total_bytes += sent


async def until_closed(reader):
    try:
        while await reader.read(65536):
            pass
    except (ConnectionError, OSError):
        pass


def handler(mode):
    st = stats.setdefault(mode, Stats())

    async def serve(reader, writer):
        st.connections += 1
        st.open += 1
        started = time.monotonic()
        sent = 0
        try:
            if mode == "ok":
                head = await read_head(reader)
                if head is None:
                    st.aborted += 1
                    return
                path = head.split(b" ", 2)[1].decode(errors="replace") if b" " in head else "/"
                now = time.monotonic()
                hits[path] = hits.get(path, 0) + 1
                times.setdefault(path, []).append(now)
                if path.rstrip("/").rsplit("/", 1)[-1] in down:
                    body, status = b"down\n", b"503 Service Unavailable"
                else:
                    body, status = b"ok\n", b"200 OK"
                writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\n"
                             b"Connection: close\r\n\r\n" % len(body) + body)
                await writer.drain()
            elif mode == "accept":
                await until_closed(reader)
            elif mode == "hang":
                await until_closed(reader)
            elif mode == "reset":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            elif mode == "drip":
                reply = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"d" * 100
                for i in range(len(reply)):
                    writer.write(reply[i:i + 1])
                    sent += 1
                    await writer.drain()
                    try:
                        data = await asyncio.wait_for(reader.read(65536), 1.0)
                        if not data:
                            break
                    except asyncio.TimeoutError:
                        pass
            elif mode == "garbage":
                writer.write(os.urandom(64 + int.from_bytes(os.urandom(2), "little") % 2000)
                             .replace(b"HTTP", b"PTTH"))
                sent = 1
                await writer.drain()
            elif mode in ("bigcl", "endless"):
                head = await read_head(reader)
                if head is None:
                    return
                header = (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG if mode == "bigcl"
                          else b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
                writer.write(header)
                closed = asyncio.ensure_future(until_closed(reader))
                # Bounded: never more than the declared 5 GiB, in practice until
                # the client gives up after its body limit.
                while sent < BIG and not closed.done():
                    writer.write(CHUNK)
                    sent += len(CHUNK)
                    await writer.drain()
                closed.cancel()
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            finish(st, started, sent)
            try:
                writer.close()
            except Exception:
                pass

    return serve


async def control(reader, writer):
    try:
        head = await read_head(reader)
        if head is None:
            return
        first = head.split(b"\r\n", 1)[0].decode()
        method, path = first.split(" ")[0], first.split(" ")[1]
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        body = head.split(b"\r\n\r\n", 1)[1]
        while len(body) < length:
            body += await reader.read(length - len(body))
        if method == "GET" and path == "/stats":
            out = {"modes": {m: s.as_dict() for m, s in stats.items()},
                   "hits": hits, "times": times, "now": time.monotonic()}
        elif method == "POST" and path == "/switch":
            req = json.loads(body)
            for i in req["ids"]:
                (down.add if req["down"] else down.discard)(i)
            out = {"down": len(down)}
        elif method == "POST" and path == "/reset":
            hits.clear()
            times.clear()
            for m in stats:
                stats[m] = Stats()
            out = {}
        else:
            out = {"error": "unknown"}
        data = json.dumps(out).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(data) + data)
        await writer.drain()
    finally:
        writer.close()


async def main(modes):
    ports = {}
    servers = []
    for mode in modes:
        stats.setdefault(mode, Stats())
        srv = await asyncio.start_server(handler(mode), "127.0.0.1", 0, backlog=4096,
                                         reuse_address=True)
        servers.append(srv)
        ports[mode] = srv.sockets[0].getsockname()[1]
    ctl = await asyncio.start_server(control, "127.0.0.1", 0, backlog=128)
    ports["control"] = ctl.sockets[0].getsockname()[1]
    print(json.dumps(ports), flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers + [ctl]))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    try:
        asyncio.run(main(sys.argv[1:]))
    except KeyboardInterrupt:
        pass
