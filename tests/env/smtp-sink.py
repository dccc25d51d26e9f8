"""SMTP sink of the test environment (tests/env/test-env.sh).

Accepts every message on a loopback port and writes it, as received, to one file
DIR/<nanoseconds>-<n>.eml, preceded by X-Cx-Envelope-From / X-Cx-Envelope-To headers.
A file appears whole (written aside, then renamed), so a test may read any *.eml it sees.
"""

import argparse
import asyncio
import itertools
import os
import signal
import time

from aiosmtpd.smtp import SMTP


class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.counter = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        name = f"{time.time_ns()}-{next(self.counter):05d}.eml"
        tmp = os.path.join(self.directory, f".{name}.tmp")
        head = (
            f"X-Cx-Envelope-From: {envelope.mail_from}\r\n"
            f"X-Cx-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode()
        body = envelope.original_content or envelope.content
        if isinstance(body, str):
            body = body.encode()
        with open(tmp, "wb") as out:
            out.write(head + body)
        os.replace(tmp, os.path.join(self.directory, name))
        print(f"stored {name} from {envelope.mail_from} to {envelope.rcpt_tos}", flush=True)
        return "250 Message accepted for delivery"


async def serve(host, port, directory):
    loop = asyncio.get_running_loop()
    sink = Sink(directory)
    server = await loop.create_server(
        lambda: SMTP(sink, hostname="cx-test-smtp", enable_SMTPUTF8=True), host, port
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"SMTP sink on {host}:{port}, mails in {directory}", flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    asyncio.run(serve(args.host, args.port, args.dir))


if __name__ == "__main__":
    main()
