#!/usr/bin/env python3
"""A TCP proxy between the service and PostgreSQL that counts round trips.

A *flight* is the bytes a client sends after the server last answered on that connection:
statements sent together (pipelined) are one flight, each statement that waits for its
answer before the next is sent starts another. For every flight the proxy records when it
started, on which connection, and how many Execute ('E') and simple Query ('Q') messages of
the PostgreSQL protocol it carried. On SIGTERM/SIGINT (or after --max-seconds) it writes one
line per flight to --out:

    <start unix µs> <connection number> <executes> <simple queries>

Loopback only. Usage: pgproxy.py --upstream 127.0.0.1:5432 --port-file F --out FLIGHTS
"""
import argparse
import asyncio
import signal
import struct
import time

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104


class Conn:
    def __init__(self, number, flights):
        self.number = number
        self.flights = flights
        self.last_from_client = False
        self.current = None
        self.buf = b""
        self.startup = True

    def client_bytes(self, data):
        if not self.last_from_client:
            self.current = [time.time_ns() // 1000, self.number, 0, 0]
            self.flights.append(self.current)
        self.last_from_client = True
        self.buf += data
        while True:
            if self.startup:
                if len(self.buf) < 8:
                    return
                length, code = struct.unpack("!II", self.buf[:8])
                if len(self.buf) < length:
                    return
                self.buf = self.buf[length:]
                if code not in (SSL_REQUEST, GSSENC_REQUEST):
                    self.startup = False
                continue
            if len(self.buf) < 5:
                return
            kind = self.buf[:1]
            (length,) = struct.unpack("!I", self.buf[1:5])
            if len(self.buf) < 1 + length:
                return
            self.buf = self.buf[1 + length:]
            if kind == b"E":
                self.current[2] += 1
            elif kind == b"Q":
                self.current[3] += 1

    def server_bytes(self):
        self.last_from_client = False


async def pump(reader, writer, on_data):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            on_data(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", default="127.0.0.1:5432")
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-seconds", type=float, default=600)
    args = ap.parse_args()
    host, port = args.upstream.rsplit(":", 1)
    flights = []
    counter = [0]

    async def handle(client_reader, client_writer):
        counter[0] += 1
        conn = Conn(counter[0], flights)
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pump(client_reader, up_writer, conn.client_bytes),
            pump(up_reader, client_writer, lambda _data: conn.server_bytes()),
        )

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    with open(args.port_file, "w") as f:
        f.write(str(server.sockets[0].getsockname()[1]))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), args.max_seconds)
    except asyncio.TimeoutError:
        pass
    server.close()
    with open(args.out, "w") as f:
        for t, number, executes, queries in flights:
            f.write(f"{t} {number} {executes} {queries}\n")


if __name__ == "__main__":
    asyncio.run(main())
