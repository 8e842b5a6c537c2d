"""Transport: the wires between the boxes on the lecture's diagram.

Every arrow on the slides (driver -> local scheduler, raylet -> GCS, owner ->
worker, object store -> object store) is a message on one of these
connections: asyncio streams over Unix sockets that live in the session's
private directory (mode 0700).

A connection carries frames: a fixed header (payload length, the sender's
Lamport clock, so trace events can be ordered causally across processes, and
the id of the step the sender is carrying out, the receiver's causal parent;
both 0 while nobody traces) and a pickled ``(request_id, method, args)`` tuple. ``request_id`` 0 means a one-way
message; otherwise the peer answers with a reply frame carrying the same id.

Before anything from a peer is unpickled, the peer must present the session
token: the first bytes a client writes are the token, and the server drops the
connection if they do not match. Unpickling is only ever done on data from
authenticated peers.

Handlers are plain objects with ``rpc_<method>(conn, *args)`` methods; a
method may return a value or a coroutine (the reply is sent when it finishes).
Addresses are strings (``"unix:/path"``) so that TCP can be added later
without changing callers.

Every process runs its loop from :func:`new_event_loop`: uvloop's (libuv, the
loop Node.js uses) where it is installed, asyncio's own otherwise or with
``RAYLAB_EVENT_LOOP=asyncio``. Same API, same code; a message hop costs about a
third less, which is most of a small call's round trip.
"""
from __future__ import annotations

import asyncio
import collections
import hmac
import itertools
import os
import pickle
import select
import socket
import struct
import sys
import threading
import time

from raylab.tracing import cause as _cause
from raylab.tracing import clock
from raylab.tracing.emit import TRACER

TOKEN_BYTES = 32
_HEADER = struct.Struct("<QQQ")  # payload length, sender's Lamport clock, sender's step
_HLEN = _HEADER.size
_REPLY = "__reply__"
_ERROR = "__error__"
_dumps = pickle.dumps
_loads = pickle.loads
_current_cause = _cause.current
_enter_cause = _cause.enter
# Background chatter (health checks, resource pulls, trace uploads) does not move the
# Lamport clock: it causes no protocol step, and counting it would make the order of
# concurrent steps depend on how many pings happened to fly by.
BACKGROUND = frozenset({
    "ping", "get_resources", "resource_view", "trace_events", "trace_hello", "trace_release",
    "trace_release_all", "trace_config", "set_trace_config", "trace_flush", "log_lines",
    "get_node_state", "get_tables", "get_nodes", "get_resource_view", "get_message_stats",
})


DEFERRED = object()  # a handler's "I will send the reply myself"
# Protocol messages this process has received, by method (background chatter excluded):
# how the GCS's load per task is measured in each control plane.
RECEIVED: collections.Counter = collections.Counter()


class ConnectionLost(ConnectionError):
    """The peer went away before answering."""


class RemoteError(Exception):
    """An exception raised by a peer's handler that could not be sent as-is."""


def unix_address(path: str) -> str:
    return "unix:" + path


def _path_of(address: str) -> str:
    kind, _, rest = address.partition(":")
    if kind != "unix":
        raise ValueError(f"unsupported transport address {address!r}; only unix: is implemented")
    return rest


class Connection(asyncio.Protocol):
    """One authenticated, framed, bidirectional message stream."""

    def __init__(self, handler, token: bytes, server: bool, name: str = ""):
        self.handler = handler
        self.token = token
        self.name = name
        self.peer = None  # set by handlers that learn who is on the other end
        self.transport = None
        self.closed = False
        self._authenticated = not server
        self._buf = bytearray()
        self._pending: dict = {}          # request id -> Future, or callback(error, value)
        self._ids = itertools.count(1)   # next() is atomic: requests may start on any thread
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._wlock = threading.Lock()   # writes may come from a worker's main thread
        self._raw = None                 # our own handle on the socket, for those writes
        self.current_rid = 0             # the request being dispatched (for deferred replies)
        self._loop = None
        self._methods: dict[str, object] = {}
        self.lost = None  # asyncio.Future resolved when the connection closes

    # -- asyncio.Protocol -------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport
        self._loop = asyncio.get_running_loop()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self._raw = socket.socket(fileno=os.dup(sock.fileno()))
        self.lost = self._loop.create_future()
        if not self._authenticated:
            return
        transport.write(self.token)  # the client speaks first: the token

    def data_received(self, data):
        buf = self._buf
        buf += data
        if not self._authenticated:
            if len(buf) < TOKEN_BYTES:
                return
            if not hmac.compare_digest(bytes(buf[:TOKEN_BYTES]), self.token):
                self.transport.abort()  # never unpickle from a stranger
                return
            del buf[:TOKEN_BYTES]
            self._authenticated = True
        pos = 0
        n = len(buf)
        while n - pos >= _HLEN:
            size, ts, cause = _HEADER.unpack_from(buf, pos)
            end = pos + _HLEN + size
            if end > n:
                break
            msg = _loads(memoryview(buf)[pos + _HLEN:end])
            pos = end
            self._dispatch(msg, ts, cause)
            if self.closed:
                return
        if pos:
            del buf[:pos]

    def connection_lost(self, exc):
        with self._wlock:
            self.closed = True
            if self._raw is not None:
                self._raw.close()
                self._raw = None
            pending, self._pending = self._pending, {}
        for fut in pending.values():
            err = ConnectionLost(f"connection {self.name} lost")
            if not isinstance(fut, asyncio.Future):
                fut(err, None)
            elif not fut.done():
                fut.set_exception(err)
        if self.lost is not None and not self.lost.done():
            self.lost.set_result(None)
        cb = getattr(self.handler, "connection_lost", None)
        if cb is not None:
            cb(self, exc)

    # -- sending ----------------------------------------------------------
    def _write(self, msg, background: bool = False, cause: int | None = None) -> None:
        if self.closed:
            raise ConnectionLost(f"connection {self.name} is closed")
        payload = _dumps(msg, 5)
        if background:
            frame = _HEADER.pack(len(payload), 0, 0) + payload
        else:
            cause = TRACER.on and (_current_cause() if cause is None else cause)
            frame = _HEADER.pack(len(payload), clock.tick(), cause) + payload
        with self._wlock:
            if not self._flush_scheduled:
                # the first message of this loop iteration goes out at once (latency); any
                # more in the same iteration are batched into one write by _flush
                self._flush_scheduled = True
                self._loop.call_soon(self._flush)
                self.transport.write(frame)
                return
            self._out.append(frame)

    def _flush(self) -> None:
        with self._wlock:
            self._flush_scheduled = False
            if self._out and not self.closed:
                data = b"".join(self._out)
                self._out.clear()
                self.transport.write(data)

    def reply_from_thread(self, rid: int, value) -> None:
        """Answer request ``rid`` from a thread other than the loop's (a worker's main
        thread replying to its owner), skipping the hop through the event loop: the frame
        goes straight into the socket when nothing is queued ahead of it."""
        self._write_from_thread((rid, _REPLY, value))

    def call_from_thread(self, method: str, args: tuple, callback) -> None:
        """Send a request from a user thread; the loop calls ``callback(error, value)``
        with the reply (the driver's actor calls take this short path)."""
        rid = next(self._ids)
        with self._wlock:
            if self.closed:
                err = ConnectionLost(f"connection {self.name} is closed")
                self._loop.call_soon_threadsafe(callback, err, None)
                return
            self._pending[rid] = callback  # before sending: the reply may come back at once
        self._write_from_thread((rid, method, args))

    def send_from_thread(self, method: str, *args) -> None:
        """A one-way message from a thread other than the loop's, ordered before anything
        this thread sends after it (a worker's output, ahead of its task's reply)."""
        self._write_from_thread((0, method, args))

    def _write_from_thread(self, msg) -> None:
        payload = _dumps(msg, 5)
        frame = _HEADER.pack(len(payload), clock.tick(), TRACER.on and _current_cause()) + payload
        with self._wlock:
            if self.closed:
                return
            if not self._flush_scheduled and not self.transport.get_write_buffer_size():
                try:
                    sent = self._raw.send(frame)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError:
                    return  # the peer is gone; connection_lost will follow
                if sent == len(frame):
                    return
                frame = frame[sent:]
            self._out.append(frame)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self._loop.call_soon_threadsafe(self._flush)

    def send(self, method: str, *args) -> None:
        """A one-way message: no reply is expected."""
        self._write((0, method, args), method in BACKGROUND)

    def call(self, method: str, *args) -> asyncio.Future:
        """A request; the returned future resolves to the peer's reply."""
        rid = next(self._ids)
        fut = self._loop.create_future()
        self._pending[rid] = fut
        self._write((rid, method, args), method in BACKGROUND)
        return fut

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self._flush()
            self.transport.close()

    # -- receiving --------------------------------------------------------
    def _dispatch(self, msg, ts: int, cause: int) -> None:
        rid, method, args = msg
        if ts:
            clock.observe(ts)
        if cause != _current_cause():
            _enter_cause(cause)  # what the handler does is caused by the sender's step
        if method == _REPLY or method == _ERROR:
            fut = self._pending.pop(rid, None)
            if fut is None:
                return
            if not isinstance(fut, asyncio.Future):
                fut(None, args) if method == _REPLY else fut(args, None)
            elif not fut.done():
                if cause:
                    _cause.hand_to(fut, cause)  # the awaiting code goes on from our step
                if method == _REPLY:
                    fut.set_result(args)
                else:
                    fut.set_exception(args)
            return
        if method not in BACKGROUND:
            RECEIVED[method] += 1
        fn = self._methods.get(method)
        if fn is None:
            fn = getattr(self.handler, "rpc_" + method, None)
            if fn is None:
                if rid:
                    self._reply_error(rid, AttributeError(f"no such method {method!r}"))
                return
            self._methods[method] = fn
        self.current_rid = rid
        try:
            result = fn(self, *args)
        except Exception as e:  # a handler bug must not kill the connection
            if rid:
                self._reply_error(rid, e)
            else:
                _report_handler_error(self, method, e)
            return
        if result is DEFERRED:
            return  # the handler answers later itself (reply / reply_from_thread)
        if asyncio.iscoroutine(result):
            if rid and TRACER.on:  # the reply names the step the handler ended at
                self._loop.create_task(_ending_cause(result)).add_done_callback(
                    lambda t, rid=rid, bg=method in BACKGROUND: self._reply_traced(rid, t, bg))
                return
            result = self._loop.create_task(result)
        if asyncio.isfuture(result):
            if rid:
                result.add_done_callback(
                    lambda t, rid=rid, bg=method in BACKGROUND: self._reply_task(rid, t, bg))
            else:
                result.add_done_callback(lambda t, m=method: _log_task_error(self, m, t))
        elif rid:
            self._reply(rid, result, method in BACKGROUND)

    def _reply(self, rid, value, background: bool = False, cause: int | None = None) -> None:
        if self.closed:
            return
        try:
            self._write((rid, _REPLY, value), background, cause)
        except Exception as e:  # an unpicklable answer becomes an error for the caller
            self._reply_error(rid, RemoteError(f"could not send the reply: {e!r}"))

    def _reply_error(self, rid, exc) -> None:
        if self.closed:
            return
        try:
            pickle.dumps(exc, 5)
        except Exception:
            exc = RemoteError(f"{type(exc).__name__}: {exc}")
        self._write((rid, _ERROR, exc))

    def _reply_task(self, rid, task, background: bool = False) -> None:
        if task.cancelled():
            self._reply_error(rid, ConnectionLost("request cancelled"))
        elif task.exception() is not None:
            self._reply_error(rid, task.exception())
        else:
            self._reply(rid, task.result(), background)

    def _reply_traced(self, rid, task, background: bool) -> None:
        """Like ``_reply_task``, for a handler run by :func:`_ending_cause`."""
        if task.cancelled() or task.exception() is not None:
            self._reply_task(rid, task, background)
        else:
            value, cause = task.result()
            self._reply(rid, value, background, cause)


async def _ending_cause(coro):
    """Run a request's coroutine handler; also return the step it ended at, which only
    its own context knows (the reply is sent from a callback, in another context)."""
    value = await coro
    return value, _current_cause()


def _report_handler_error(conn, method, exc):
    import traceback
    traceback.print_exception(type(exc), exc, exc.__traceback__)
    print(f"raylab: handler for {method!r} on {conn.name} failed: {exc!r}", flush=True)


def _log_task_error(conn, method, task):
    if not task.cancelled() and task.exception() is not None:
        _report_handler_error(conn, method, task.exception())


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A fresh event loop: uvloop's where installed (see the module docstring)."""
    if os.environ.get("RAYLAB_EVENT_LOOP", "uvloop") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(main):
    """``asyncio.run(main)`` on a loop from :func:`new_event_loop` (a server's main)."""
    if sys.version_info < (3, 11):
        return asyncio.run(main)   # no loop_factory before 3.11: asyncio's own loop
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)


async def serve(address: str, token: bytes, make_handler, name: str = "server"):
    """Listen at ``address``; ``make_handler()`` gives the handler for each peer."""
    path = _path_of(address)
    loop = asyncio.get_running_loop()
    return await loop.create_unix_server(
        lambda: Connection(make_handler(), token, server=True, name=name), path)


async def connect(address: str, token: bytes, handler, name: str = "", timeout: float = 10.0,
                  retry: bool = False) -> Connection:
    """Open an authenticated connection; with ``retry`` wait for the socket to appear."""
    path = _path_of(address)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.002
    while True:
        try:
            _, conn = await loop.create_unix_connection(
                lambda: Connection(handler, token, server=False, name=name or path), path)
            return conn
        except (FileNotFoundError, ConnectionRefusedError):
            if not retry or loop.time() > deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)


class SyncConnection:
    """A blocking connection for a user thread's hot requests (the object store's client).

    It speaks the same frames as :class:`Connection`, so any server handles it,
    but a request goes straight from the calling thread to the peer and back,
    with no hop through an event loop: this is the path of ``put`` and ``get``
    of large objects. Requests are one at a time (``_call_lock``); one-way sends
    (releases, from the io thread) only take ``_send_lock``, so they never wait
    behind a slow request such as a pull from another node.
    """

    def __init__(self, address: str, token: bytes, timeout: float = 30.0):
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        self._sock.connect(_path_of(address))
        self._sock.sendall(token)
        self._sock.settimeout(None)  # the peer always replies or closes; see call_waiting
        self._call_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._next_id = 1
        self._buf = bytearray()
        self.closed = False
        self._abandoned: dict = {}  # request id -> what to do with its reply, if it comes

    def _frame(self, msg) -> bytes:
        payload = _dumps(msg, 5)
        return _HEADER.pack(len(payload), clock.tick(), TRACER.on and _current_cause()) + payload

    def call(self, method: str, *args):
        return self.call_waiting(None, method, *args)

    def call_waiting(self, wait, method: str, *args, on_late=None):
        """A request; with ``wait``, the reply is awaited by ``wait(reply)``, which calls
        ``reply.wait(seconds) -> bool`` as often as it likes (a driver on a paused cluster
        steps it between tries) and returns whether the reply came. If it did not,
        ``TimeoutError``; a reply that comes later goes to ``on_late(value)`` (to give back
        what the peer granted meanwhile)."""
        with self._call_lock:
            rid = self._next_id
            self._next_id += 1
            data = self._frame((rid, method, args))
            with self._send_lock:
                self._sock.sendall(data)
            reply = _Reply(self, rid)
            if wait is None:
                reply.wait(None)
            elif not wait(reply):
                if on_late is not None:
                    self._abandoned[rid] = on_late
                raise TimeoutError(f"no reply to {method}")
            if reply.kind == _ERROR:
                raise reply.value
            return reply.value

    def send(self, method: str, *args) -> None:
        data = self._frame((0, method, args))
        with self._send_lock:
            self._sock.sendall(data)

    def send_many(self, method: str, arg_lists) -> None:
        """Several one-way messages in one write (e.g. a batch of releases)."""
        data = b"".join(self._frame((0, method, args)) for args in arg_lists)
        with self._send_lock:
            self._sock.sendall(data)

    def _has_frame(self) -> bool:
        buf = self._buf
        return len(buf) >= _HLEN and len(buf) >= _HLEN + _HEADER.unpack_from(buf, 0)[0]

    def _read_one(self):
        buf = self._buf
        while True:
            if len(buf) >= _HLEN:
                size, ts, cause = _HEADER.unpack_from(buf, 0)
                if len(buf) >= _HLEN + size:
                    rid, kind, value = _loads(memoryview(buf)[_HLEN:_HLEN + size])
                    del buf[:_HLEN + size]
                    return rid, kind, value, ts, cause
            chunk = self._sock.recv(1 << 20)
            if not chunk:
                self.closed = True
                raise ConnectionLost("the peer closed the connection")
            buf += chunk

    def close(self) -> None:
        self.closed = True
        try:
            self._sock.close()
        except OSError:
            pass


class _Reply:
    """The awaited reply of one :meth:`SyncConnection.call_waiting` request."""

    def __init__(self, conn: SyncConnection, rid: int):
        self.conn, self.rid = conn, rid
        self.kind = self.value = None
        self.done = False

    def wait(self, timeout: float | None) -> bool:
        """Read frames until ours arrives; False if ``timeout`` seconds pass first.

        The socket stays blocking (the io thread may be sending releases on it), so
        waiting with a limit is a ``select`` before each read, never a socket timeout.
        """
        conn = self.conn
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            if not conn._has_frame():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and (left <= 0 or
                                         not select.select([conn._sock], [], [], left)[0]):
                    return False
            rid, kind, value, ts, cause = conn._read_one()
            clock.observe(ts)
            if cause:
                _enter_cause(cause)  # this thread goes on from the peer's step
            if rid == self.rid:
                self.kind, self.value, self.done = kind, value, True
            elif rid in conn._abandoned:
                late = conn._abandoned.pop(rid)
                if kind != _ERROR:
                    late(value)
        return True


def new_token() -> bytes:
    return os.urandom(TOKEN_BYTES)


def socket_path_ok(path: str) -> bool:
    # sockaddr_un.sun_path is 108 bytes on Linux, including the NUL
    return len(os.fsencode(path)) < 107


__all__ = ["Connection", "SyncConnection", "ConnectionLost", "RemoteError", "serve", "connect",
           "new_token",
           "unix_address", "socket_path_ok"]
