#!/usr/bin/env python3
"""A loopback TCP server for the probe tests (Python 3 stdlib only).

Listens on --host (127.0.0.1 or ::1) on a port chosen by the kernel, prints
that port as its first line on stdout and serves until terminated.

Modes:
  hold   accept and keep every connection open, sending nothing
  reset  accept and reset every connection at once (RST, not FIN)
  stall  accept and read what the client sends (a TLS ClientHello) but never
         answer, so a TLS handshake never completes
  tls    TLS with --cert/--key, then echo what the client sends; with
         --client-ca, require a client certificate issued by that CA; with
         --require-sni NAME, abort handshakes whose SNI is not NAME
"""

import argparse
import socket
import ssl
import struct
import threading


def drain(conn):
    with conn:
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass


def echo_tls(conn, context):
    try:
        with context.wrap_socket(conn, server_side=True) as tls:
            while data := tls.recv(65536):
                tls.sendall(data)
    except OSError:
        # Clients that reject the certificate abort the handshake: expected.
        conn.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["hold", "reset", "stall", "tls"], required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--client-ca")
    parser.add_argument("--require-sni")
    args = parser.parse_args()

    context = None
    if args.mode == "tls":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        if args.client_ca:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(args.client_ca)
        if args.require_sni:
            def check_sni(_socket, server_name, _context):
                if server_name != args.require_sni:
                    return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
                return None
            context.sni_callback = check_sni

    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    server = socket.socket(family, socket.SOCK_STREAM)
    server.bind((args.host, 0))
    server.listen(64)
    print(server.getsockname()[1], flush=True)

    held = []  # keeps "hold" connections open until the process ends
    while True:
        conn, _ = server.accept()
        if args.mode == "hold":
            held.append(conn)
        elif args.mode == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
        elif args.mode == "stall":
            threading.Thread(target=drain, args=(conn,), daemon=True).start()
        else:
            threading.Thread(target=echo_tls, args=(conn, context), daemon=True).start()


if __name__ == "__main__":
    main()
