#!/usr/bin/env python3
"""A loopback DNS server for the DNS probe tests. Needs python3-dnslib, so run it
with /usr/bin/python3.

Serves UDP and TCP on one port of --host (127.0.0.1 or ::1) chosen by the
kernel, prints that port as its first line on stdout, logs every query to
stderr as "query NAME TYPE rd=0|1 tcp=0|1" and serves until terminated.

Modes:
  zone       answer from --zone (zone-file text, names fully qualified): the
             records of the name and type asked, following CNAMEs within the
             zone. A positive answer carries the zone's NS records in the
             authority section and their addresses in the additional section;
             otherwise the SOA goes in the authority section, with NXDOMAIN if
             the name has no records at all.
  silent     read queries and never answer
  garbage    answer with random bytes
  truncated  a reply whose header announces an answer that is not there
  loop       a reply whose answer name is a compression pointer to itself
  badrdata   a reply with an A record of 5 bytes
"""

import argparse
import os
import socket
import struct
import sys
import threading

from dnslib import CLASS, QTYPE, RCODE, RR, DNSRecord


def zone_reply(request, zone):
    reply = request.reply()
    qname, qtype = request.q.qname, request.q.qtype
    name = qname
    for _ in range(8):
        here = [rr for rr in zone if rr.rname == name]
        match = [rr for rr in here if rr.rtype == qtype]
        cname = [rr for rr in here if rr.rtype == QTYPE.CNAME]
        if match:
            reply.add_answer(*match)
        elif cname:
            reply.add_answer(*cname)
            name = cname[0].rdata.label
            continue
        break
    if reply.rr:
        ns = [rr for rr in zone if rr.rtype == QTYPE.NS]
        reply.add_auth(*ns)
        for n in ns:
            reply.add_ar(*[rr for rr in zone
                           if rr.rname == n.rdata.label and rr.rtype in (QTYPE.A, QTYPE.AAAA)])
    else:
        if not any(rr.rname == qname for rr in zone):
            reply.header.rcode = RCODE.NXDOMAIN
        reply.add_auth(*[rr for rr in zone if rr.rtype == QTYPE.SOA])
    return reply.pack()


def broken_reply(request, mode):
    """The request's header and question with a damaged answer section."""
    reply = request.reply()
    head = bytearray(reply.pack())  # no records yet: header and question only
    struct.pack_into("!H", head, 6, 1)  # ancount = 1
    if mode == "truncated":
        return bytes(head)
    if mode == "loop":
        return bytes(head) + struct.pack("!H", 0xC000 | len(head)) + struct.pack("!HHIH", 1, 1, 60, 4)
    # badrdata: owner = pointer to the question name, then 5 bytes of A data.
    return bytes(head) + struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 5) + b"\x01\x02\x03\x04\x05"


def respond(data, args, zone, tcp):
    try:
        request = DNSRecord.parse(data)
    except Exception as e:  # noqa: BLE001 - a test server logs and ignores bad queries
        print(f"bad query: {e}", file=sys.stderr, flush=True)
        return None
    q = request.q
    print(f"query {q.qname} {QTYPE.get(q.qtype)} rd={request.header.rd} tcp={int(tcp)}",
          file=sys.stderr, flush=True)
    if args.mode == "silent":
        return None
    if args.mode == "garbage":
        return os.urandom(40)
    if args.mode == "zone":
        return zone_reply(request, zone)
    return broken_reply(request, args.mode)


def serve_udp(sock, args, zone):
    while True:
        data, peer = sock.recvfrom(65535)
        out = respond(data, args, zone, False)
        if out is not None:
            sock.sendto(out, peer)


def recv_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def serve_tcp_conn(conn, args, zone):
    with conn:
        try:
            while (head := recv_exact(conn, 2)) is not None:
                data = recv_exact(conn, struct.unpack("!H", head)[0])
                if data is None:
                    return
                out = respond(data, args, zone, True)
                if out is not None:
                    conn.sendall(struct.pack("!H", len(out)) + out)
        except OSError:
            pass


def serve_tcp(sock, args, zone):
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=serve_tcp_conn, args=(conn, args, zone), daemon=True).start()


def bind_pair(host):
    """A UDP and a TCP socket on the same kernel-chosen port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        udp.bind((host, 0))
        port = udp.getsockname()[1]
        tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            tcp.bind((host, port))
        except OSError:
            udp.close()
            tcp.close()
            continue
        tcp.listen(16)
        return udp, tcp, port
    raise SystemExit("no port free for both UDP and TCP")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", default="zone",
                        choices=["zone", "silent", "garbage", "truncated", "loop", "badrdata"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--zone", default="")
    args = parser.parse_args()
    zone = [rr for rr in RR.fromZone(args.zone) if rr.rclass == CLASS.IN] if args.zone else []

    udp, tcp, port = bind_pair(args.host)
    threading.Thread(target=serve_tcp, args=(tcp, args, zone), daemon=True).start()
    print(port, flush=True)
    serve_udp(udp, args, zone)


if __name__ == "__main__":
    main()
