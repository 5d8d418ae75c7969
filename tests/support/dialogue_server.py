#!/usr/bin/env python3
"""Scripted loopback servers for the TCP dialogue tests (Python 3 stdlib only).

Listens on 127.0.0.1 on a port chosen by the kernel, prints that port as its
first line on stdout and serves until terminated, one thread per connection.

Modes:
  smtp-stall      "220 mail.example.org ESMTP" banner; answers EHLO without
                  STARTTLS ("250-mail.example.org", "250 8BITMIME") and then
                  reads on without ever answering again
  starttls-stall  banner; answers EHLO with STARTTLS and STARTTLS with 220,
                  then never answers the TLS ClientHello
  garbage         sends 1000 bytes that are no protocol, then closes
  ssh             sends an OpenSSH identification line and holds the connection
  banner          sends --banner (Python escapes such as \\r\\n) and closes
  pop3            POP3 with STLS (needs --cert/--key), CAPA and QUIT
  imap            IMAP with STARTTLS (needs --cert/--key), CAPABILITY and LOGOUT
  ldap            answers an LDAP StartTLS ExtendedRequest with success and
                  runs TLS (needs --cert/--key); with --refuse, answers
                  protocolError instead and keeps the connection plaintext
"""

import argparse
import socket
import ssl
import threading

# ExtendedResponse, messageID 1, resultCode success (0), empty matchedDN and
# diagnosticMessage, responseName 1.3.6.1.4.1.1466.20037 (RFC 4511 4.12, 4.14).
OID = b"1.3.6.1.4.1.1466.20037"
LDAP_SUCCESS = (bytes([0x30, 0x24, 0x02, 0x01, 0x01, 0x78, 0x1F, 0x0A, 0x01, 0x00,
                       0x04, 0x00, 0x04, 0x00, 0x8A, len(OID)]) + OID)
LDAP_PROTOCOL_ERROR = bytes([0x30, 0x0C, 0x02, 0x01, 0x01, 0x78, 0x07, 0x0A, 0x01, 0x02,
                             0x04, 0x00, 0x04, 0x00])


class Lines:
    """Reads CRLF lines from a socket that may be swapped for a TLS one."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def line(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(4096)
            if not data:
                return None
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("latin-1")

    def send(self, text):
        self.sock.sendall(text.encode("latin-1"))

    def starttls(self, context):
        # The client sends its ClientHello only after our go-ahead: nothing
        # may be buffered.
        assert not self.buf
        self.sock = context.wrap_socket(self.sock, server_side=True)


def drain(sock):
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


def smtp(conn, args, context):
    io = Lines(conn)
    io.send("220 mail.example.org ESMTP\r\n")
    while (line := io.line()) is not None:
        verb = line.split(" ")[0].upper()
        if verb == "EHLO" and args.mode == "smtp-stall":
            io.send("250-mail.example.org\r\n250 8BITMIME\r\n")
            drain(io.sock)
            return
        if verb == "EHLO":
            io.send("250-mail.example.org\r\n250-STARTTLS\r\n250 8BITMIME\r\n")
        elif verb == "STARTTLS":
            io.send("220 2.0.0 go ahead\r\n")
            drain(io.sock)
            return


def pop3(conn, context):
    io = Lines(conn)
    io.send("+OK POP3 ready\r\n")
    while (line := io.line()) is not None:
        verb = line.upper()
        if verb == "STLS":
            io.send("+OK begin TLS\r\n")
            io.starttls(context)
        elif verb == "CAPA":
            io.send("+OK\r\nUSER\r\nSTLS\r\n.\r\n")
        elif verb == "QUIT":
            io.send("+OK bye\r\n")
            return
        else:
            io.send("-ERR unknown command\r\n")


def imap(conn, context):
    io = Lines(conn)
    io.send("* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n")
    while (line := io.line()) is not None:
        tag, _, command = line.partition(" ")
        command = command.upper()
        if command == "STARTTLS":
            io.send(tag + " OK begin TLS\r\n")
            io.starttls(context)
        elif command == "CAPABILITY":
            io.send("* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + " OK done\r\n")
        elif command == "LOGOUT":
            io.send("* BYE\r\n" + tag + " OK done\r\n")
            return
        else:
            io.send(tag + " BAD unknown command\r\n")


def recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def ldap(conn, args, context):
    # A short-form BER SEQUENCE: tag, length, content.
    head = recv_exactly(conn, 2)
    if head is None or head[0] != 0x30 or recv_exactly(conn, head[1]) is None:
        return
    if args.refuse:
        conn.sendall(LDAP_PROTOCOL_ERROR)
        drain(conn)
        return
    conn.sendall(LDAP_SUCCESS)
    drain(context.wrap_socket(conn, server_side=True))


def serve(conn, args, context):
    try:
        with conn:
            if args.mode in ("smtp-stall", "starttls-stall"):
                smtp(conn, args, context)
            elif args.mode == "garbage":
                conn.sendall(bytes((i * 37 + 11) % 256 for i in range(1000)))
            elif args.mode == "ssh":
                conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")
                drain(conn)
            elif args.mode == "banner":
                conn.sendall(args.banner.encode("latin-1").decode("unicode_escape")
                             .encode("latin-1"))
            elif args.mode == "pop3":
                pop3(conn, context)
            elif args.mode == "imap":
                imap(conn, context)
            elif args.mode == "ldap":
                ldap(conn, args, context)
    except (OSError, ssl.SSLError):
        # Clients that reject the certificate abort the handshake: expected.
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", required=True,
                        choices=["smtp-stall", "starttls-stall", "garbage", "ssh", "banner",
                                 "pop3", "imap", "ldap"])
    parser.add_argument("--banner", default="")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--refuse", action="store_true")
    args = parser.parse_args()

    context = None
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)

    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    print(server.getsockname()[1], flush=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=serve, args=(conn, args, context), daemon=True).start()


if __name__ == "__main__":
    main()
