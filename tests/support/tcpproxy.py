"""A TCP proxy in front of PostgreSQL, in a thread of its own, to simulate database faults.

    proxy = TcpProxy("127.0.0.1", 5432).open()   # listens on 127.0.0.1:proxy.port
    proxy.stop()    # "PostgreSQL stopped": listener closed, every connection reset
    proxy.start()   # "PostgreSQL started": listens again on the same port
    proxy.lose_next_reservation_ack()  # see below
    proxy.close()

While stopped, a new connection is refused and an established one sees a TCP
reset, which is what a client of a crashed or restarted server sees.

`lose_next_reservation_ack()` lets the next transaction that inserts into
`api_requests` (a reservation's `pending` row) reach PostgreSQL and commit,
then resets that connection before the answer gets back: the client cannot
know whether its commit happened (the worst moment for a network cut). It
follows the PostgreSQL frontend protocol far enough to see statements
(`Parse`/`Bind`, simple `Query`) and transaction boundaries, so it works for a
single autocommit statement as well as for `BEGIN ... COMMIT`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Any

SSL_REQUEST = 80877103
GSS_REQUEST = 80877104
TRAPPED = b"INSERT INTO api_requests"


@dataclass
class _Session:
    """What the proxy follows of one client connection's protocol stream."""

    buffer: bytearray = field(default_factory=bytearray)
    started: bool = False
    statements: dict[bytes, bytes] = field(default_factory=dict)
    in_transaction: bool = False
    wrote: bool = False  # the open transaction inserted a trapped row

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """Complete messages as (type, payload); the startup packets have type b""."""
        self.buffer += data
        out: list[tuple[bytes, bytes]] = []
        while True:
            if not self.started:
                if len(self.buffer) < 8:
                    return out
                length, code = struct.unpack("!ii", self.buffer[:8])
                if len(self.buffer) < length:
                    return out
                if code not in (SSL_REQUEST, GSS_REQUEST):
                    self.started = True
                out.append((b"", bytes(self.buffer[4:length])))
                del self.buffer[:length]
                continue
            if len(self.buffer) < 5:
                return out
            (length,) = struct.unpack("!i", self.buffer[1:5])
            if len(self.buffer) < 1 + length:
                return out
            out.append((bytes(self.buffer[:1]), bytes(self.buffer[5 : 1 + length])))
            del self.buffer[: 1 + length]

    def commits_trapped_row(self, kind: bytes, payload: bytes) -> bool:
        """Whether this message makes a trapped insert durable (commit or autocommit)."""
        if kind == b"P":
            name, _, rest = payload.partition(b"\0")
            self.statements[name] = rest.partition(b"\0")[0]
        elif kind == b"B":
            _portal, _, rest = payload.partition(b"\0")
            sql = self.statements.get(rest.partition(b"\0")[0], b"")
            if TRAPPED in sql:
                if not self.in_transaction:
                    return True
                self.wrote = True
        elif kind == b"Q":
            sql = payload.rstrip(b"\0").strip().upper()
            if sql.startswith((b"BEGIN", b"START TRANSACTION")):
                self.in_transaction, self.wrote = True, False
            elif sql.startswith((b"COMMIT", b"END")):
                wrote = self.wrote
                self.in_transaction, self.wrote = False, False
                return wrote
            elif sql.startswith(b"ROLLBACK"):
                self.in_transaction, self.wrote = False, False
            elif TRAPPED in sql.upper() and not self.in_transaction:
                return True
        return False


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target_host`:`target_port` while started."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.connections = 0
        self.lost_acks = 0
        self._lose_ack = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="tcp-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.BaseTransport] = set()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def open(self) -> TcpProxy:
        self._thread.start()
        self.start()
        return self

    def start(self) -> None:
        """Listen (again) on the proxy's port."""
        self._call(self._listen())

    def stop(self) -> None:
        """Close the listener and reset every open connection, both ways."""
        self._call(self._stop())

    def lose_next_reservation_ack(self) -> None:
        """Let the next reservation commit in PostgreSQL, and reset its connection unanswered."""
        self._lose_ack = True

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _listen(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for transport in list(self._transports):
            _reset(transport)
        self._transports.clear()
        await asyncio.sleep(0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._server is None:
            _reset(writer.transport)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _reset(writer.transport)
            return
        self.connections += 1
        pair = {writer.transport, up_writer.transport}
        self._transports |= pair
        muted = asyncio.Event()  # once set, nothing more reaches the client
        try:
            await asyncio.gather(
                self._to_server(reader, up_writer, pair, muted), _pipe(up_reader, writer, muted)
            )
        finally:
            self._transports -= pair
            for w in (writer, up_writer):
                w.close()

    async def _to_server(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pair: set[asyncio.BaseTransport],
        muted: asyncio.Event,
    ) -> None:
        session = _Session()
        try:
            while data := await reader.read(65536):
                trapped = False
                for kind, payload in session.feed(data):
                    trapped |= session.commits_trapped_row(kind, payload)
                lose = trapped and self._lose_ack
                if lose:
                    self._lose_ack = False
                    muted.set()
                writer.write(data)
                await writer.drain()
                if lose:
                    await asyncio.sleep(0.3)  # the server reads the statement and commits it
                    self.lost_acks += 1
                    for transport in pair:
                        _reset(transport)
                    return
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                if writer.can_write_eof():
                    writer.write_eof()


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, muted: asyncio.Event
) -> None:
    try:
        while data := await reader.read(65536):
            if muted.is_set():
                continue
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


def _reset(transport: asyncio.BaseTransport) -> None:
    """Abort with SO_LINGER 0, so the peer gets a TCP RST rather than a clean close."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if isinstance(transport, asyncio.WriteTransport | asyncio.ReadTransport):
        transport.abort()
