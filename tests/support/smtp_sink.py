"""An SMTP sink for tests: accepts mail on 127.0.0.1 and stores each message.

Run with /usr/bin/python3 (Debian's aiosmtpd imports only there). Prints the
port it listens on as its first line, then serves until terminated.

Each accepted message is written to DIR/new/<n>.eml (Maildir-like: written to
DIR/tmp first, then renamed, so a reader never sees half a message), with
trace headers prepended the way an MTA prepends Received:
  X-Sink-TLS: yes|no         whether the session ran over TLS
  X-Sink-Auth: <login>|-     the login that authenticated, if any
  X-Sink-Rcpt: <a>, <b>      the accepted envelope recipients

Behaviour switches:
  --tempfail N        answer 451 to the first N messages (end of DATA), then 250
  --reject            answer 550 to every message (end of DATA)
  --delay S           wait S seconds before answering each DATA (a slow relay)
  recipients whose local part is "nobody" are refused at RCPT with 550
  --auth USER:PASS    require AUTH with exactly these credentials (needs --tls)
  --tls CERT KEY      offer STARTTLS with this certificate and require it
  --smtps CERT KEY    implicit TLS (SMTPS): TLS from the first byte
DIR/attempts counts every message the sink answered at the end of DATA.
"""

import argparse
import asyncio
import os
import ssl

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Handler:
    def __init__(self, directory, tempfail, reject, delay):
        self.directory = directory
        self.delay = delay
        self.tempfail = tempfail
        self.reject = reject
        self.answered = 0
        self.stored = 0
        for sub in ("tmp", "new"):
            os.makedirs(os.path.join(directory, sub), exist_ok=True)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.split("@")[0] == "nobody":
            return "550 5.1.1 <%s>: user unknown" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        self.answered += 1
        self._write("attempts", str(self.answered))
        if self.answered <= self.tempfail:
            return "451 4.3.0 temporary failure, try again later"
        if self.reject:
            return "550 5.7.1 message refused by policy"
        self.stored += 1
        # STARTTLS and implicit TLS both leave an SSL transport behind.
        tls = server.transport.get_extra_info("ssl_object") is not None
        login = session.auth_data.login.decode() if session.authenticated else "-"
        trace = (
            "X-Sink-TLS: %s\r\nX-Sink-Auth: %s\r\nX-Sink-Rcpt: %s\r\n"
            % ("yes" if tls else "no", login, ", ".join(envelope.rcpt_tos))
        ).encode()
        name = "%d.eml" % self.stored
        self._write(os.path.join("tmp", name), trace + envelope.original_content, "wb")
        os.rename(
            os.path.join(self.directory, "tmp", name),
            os.path.join(self.directory, "new", name),
        )
        return "250 OK stored as %s" % name

    def _write(self, name, data, mode="w"):
        with open(os.path.join(self.directory, name), mode) as f:
            f.write(data)


def server_context(cert, key):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tempfail", type=int, default=0)
    parser.add_argument("--reject", action="store_true")
    parser.add_argument("--delay", type=float, default=0)
    parser.add_argument("--auth")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    parser.add_argument("--smtps", nargs=2, metavar=("CERT", "KEY"))
    args = parser.parse_args()

    handler = Handler(args.dir, args.tempfail, args.reject, args.delay)
    options = {"hostname": "sink.test", "timeout": 30}
    if args.tls:
        options.update(tls_context=server_context(*args.tls), require_starttls=True)
    implicit = server_context(*args.smtps) if args.smtps else None
    if args.auth:
        user, password = args.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login.decode() == user
                and auth_data.password.decode() == password
            )
            return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

        options.update(authenticator=authenticator, auth_required=True)

    async def serve():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(handler, loop=loop, **options), "127.0.0.1", args.port, ssl=implicit
        )
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
