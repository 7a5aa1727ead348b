"""One step as one OS process group: start it, stream its output, stop it, say how it ended.

A step is often a shell that starts children of its own (a build tool, a test server). Signals
therefore go to the whole process group (the step is started in a new session), and when the
step's main process ends, whatever it left behind in its group is killed too: a background
process must neither outlive its step nor keep the output pipe open.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import functools
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slotpool.agent.isolation import StepUser
from slotpool.domain.tasks import LogStream, OutputChunk, StepStatus
from slotpool.protocol import MAX_LOG_BATCH, MAX_MESSAGE, StepResult

CHUNK_BYTES = 64 * 1024  # of output in one chunk, and in one batch of chunks
FLUSH_SECONDS = 0.5  # a steadily writing step: two log requests a second
# How long the output may still trickle in after the step ended (an escaped process may hold
# the pipe open for ever; its output is not the step's anyway).
_OUTPUT_TAIL_SECONDS = 2.0
_GROUP_POLL_SECONDS = 0.05

Emit = Callable[[Sequence[OutputChunk]], None]  # a batch of chunks, in the order they were read


@dataclass(frozen=True)
class StepOutcome:
    """How a step ended, in the agent's words; ``result`` is what the control plane is told."""

    status: StepStatus
    exit_code: int | None
    message: str

    def result(self) -> StepResult:
        # The control plane stores no NUL, no lone surrogate (an undecodable path in an OS error
        # has them) and at most MAX_MESSAGE characters: the message is made to fit, not refused.
        message = self.message.replace("\x00", "\ufffd").encode("utf-8", "replace").decode()
        return StepResult(
            status=self.status, exit_code=self.exit_code, message=message[:MAX_MESSAGE]
        )


class Cancellation:
    """A request to stop one step, with the reason reported in its result."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.reason = ""

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def request(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    async def wait(self) -> None:
        await self._event.wait()


async def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    time_limit: float | None,
    grace: float,
    cancellation: Cancellation,
    emit: Emit,
    user: StepUser | None = None,
) -> StepOutcome:
    """Run ``argv`` to its end, its time limit or a cancellation; output goes to ``emit``.
    ``user``: run it as that user (no supplementary groups), not as the agent's."""
    if cancellation.requested:
        return StepOutcome(StepStatus.cancelled, None, cancellation.reason)
    try:
        process, outputs, transports = await _start(argv, cwd=cwd, env=env, user=user)
    except (OSError, ValueError) as exc:  # not found, not executable, a bad directory...
        return StepOutcome(StepStatus.failed, None, f"cannot start the step: {exc}")
    pump = asyncio.create_task(pump_output(outputs, emit))
    try:
        stopped = await _wait_for_end(process, time_limit, cancellation)
        if stopped is not None:
            await terminate_group(process, grace)
        _signal_group(process.pid, signal.SIGKILL)  # leftovers of a step that ended by itself
        await _finish_output(pump)
    except BaseException:
        # The agent itself stops: never leave a step running behind it.
        _signal_group(process.pid, signal.SIGKILL)
        pump.cancel()
        await process.wait()
        raise
    finally:
        for transport in transports:
            transport.close()
    assert process.returncode is not None
    return _outcome(process.returncode, stopped, time_limit, cancellation.reason)


Outputs = dict[LogStream, asyncio.StreamReader]


async def _start(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], user: StepUser | None
) -> tuple[asyncio.subprocess.Process, Outputs, list[asyncio.ReadTransport]]:
    """Start the step in a session of its own (as ``user``, if given), its stdout and stderr
    each into a pipe of ours.

    The pipes are not the process's (``stdout=PIPE``) on purpose: asyncio's ``Process.wait()``
    waits for the process *and* its pipes, and a background process that inherited a pipe
    would hold the step open for as long as it lives.
    """
    pipes = {stream: os.pipe() for stream in LogStream}
    as_user: dict[str, Any] = {}
    if user is not None:
        as_user = {"user": user.uid, "group": user.gid, "extra_groups": []}
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=pipes[LogStream.stdout][1],
            stderr=pipes[LogStream.stderr][1],
            start_new_session=True,
            **as_user,
        )
    except BaseException:
        for read_fd, _ in pipes.values():
            os.close(read_fd)
        raise
    finally:
        for _, write_fd in pipes.values():
            os.close(write_fd)
    loop = asyncio.get_running_loop()
    readers: Outputs = {}
    transports: list[asyncio.ReadTransport] = []
    for stream, (read_fd, _) in pipes.items():
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            functools.partial(asyncio.StreamReaderProtocol, reader),
            os.fdopen(read_fd, "rb", buffering=0),
        )
        readers[stream] = reader
        transports.append(transport)
    return process, readers, transports


async def _wait_for_end(
    process: asyncio.subprocess.Process, time_limit: float | None, cancellation: Cancellation
) -> StepStatus | None:
    """None when the process ended by itself, else why it must be stopped."""
    exited = asyncio.create_task(process.wait())
    cancelled = asyncio.create_task(cancellation.wait())
    try:
        await asyncio.wait(
            {exited, cancelled}, timeout=time_limit, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        exited.cancel()
        cancelled.cancel()
    if exited.done() and not exited.cancelled():
        return None
    return StepStatus.cancelled if cancellation.requested else StepStatus.timed_out


async def terminate_group(process: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM to the step's process group; SIGKILL to what is left after ``grace`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    _signal_group(process.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(process.wait(), grace)
    # No event says when a process group is empty: poll, briefly.
    while _group_alive(process.pid) and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(_GROUP_POLL_SECONDS)
    _signal_group(process.pid, signal.SIGKILL)
    await process.wait()


async def _finish_output(pump: asyncio.Task[None]) -> None:
    done, _ = await asyncio.wait({pump}, timeout=_OUTPUT_TAIL_SECONDS)
    if not done:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump


def _outcome(
    returncode: int, stopped: StepStatus | None, timeout: float | None, reason: str
) -> StepOutcome:
    exit_code = returncode if returncode >= 0 else None
    if stopped is StepStatus.timed_out:
        return StepOutcome(stopped, exit_code, f"timed out after {timeout:g} s")
    if stopped is StepStatus.cancelled:
        return StepOutcome(stopped, exit_code, reason)
    if returncode == 0:
        return StepOutcome(StepStatus.succeeded, 0, "exited with code 0")
    if returncode > 0:
        return StepOutcome(StepStatus.failed, returncode, f"exited with code {returncode}")
    name = signal.Signals(-returncode).name
    return StepOutcome(StepStatus.failed, None, f"killed by signal {name}")


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    # Gone already, or (after the group emptied) no longer ours: nothing to stop either way.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs. Zombies do not count: an orphan is reaped by
    whoever adopted it (in a container, often nobody), and it is gone for every purpose here."""
    try:
        entries = list(os.scandir("/proc"))
    except OSError:  # no /proc: ask the kernel, zombies included
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    return any(_runs_in_group(entry.path, pgid) for entry in entries if entry.name.isdigit())


def _runs_in_group(proc_dir: str, pgid: int) -> bool:
    try:
        with open(f"{proc_dir}/stat", encoding="utf-8", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False  # it ended meanwhile
    # After the command name: state, ppid, pgrp.
    return len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X")


@dataclass
class _Batch:
    chunks: list[OutputChunk] = field(default_factory=list)
    size: int = 0  # bytes of output in the chunks


class Chunker:
    """Bytes of both outputs in, batches of ordered text chunks out.

    A chunk holds one stream's output: at most 64 KiB, UTF-8 decoded with replacement (a
    character split between two reads is decoded whole), NUL replaced (the control plane stores
    text, and PostgreSQL refuses NUL). Output of the other stream starts a new chunk, so the log
    keeps the order the two were read in. Chunks go out in batches (one request each): when a
    batch holds 64 KiB of output or ``MAX_LOG_BATCH`` chunks, and at every ``flush``."""

    def __init__(self, emit: Emit, *, limit: int = CHUNK_BYTES) -> None:
        self._emit = emit
        self._limit = limit
        self._buffer = bytearray()
        self._stream = LogStream.stdout
        self._decoders = {
            stream: codecs.getincrementaldecoder("utf-8")(errors="replace") for stream in LogStream
        }
        self._seq = 0
        self._batch = _Batch()

    def add(self, data: bytes, stream: LogStream = LogStream.stdout) -> None:
        if stream is not self._stream:
            self._close(bytes(self._buffer), final=False)
            self._buffer.clear()
            self._stream = stream
        self._buffer += data
        while len(self._buffer) >= self._limit:
            self._close(bytes(self._buffer[: self._limit]), final=False)
            del self._buffer[: self._limit]

    def flush(self, *, final: bool = False) -> None:
        """What was read goes out now (``final``: also what the decoders still hold)."""
        self._close(bytes(self._buffer), final=final)
        self._buffer.clear()
        if final:  # what the other stream's decoder still holds (a cut-off character)
            for stream in LogStream:
                if stream is not self._stream:
                    self._stream = stream
                    self._close(b"", final=True)
        self._send()

    def _close(self, data: bytes, *, final: bool) -> None:
        text = self._decoders[self._stream].decode(data, final=final)
        if not text:
            return
        if self._batch.size + len(data) > self._limit or len(self._batch.chunks) == MAX_LOG_BATCH:
            self._send()  # the batch is full: this chunk starts the next
        chunk = OutputChunk(self._seq, text.replace("\x00", "\ufffd"), self._stream)
        self._batch.chunks.append(chunk)
        self._batch.size += len(data)
        self._seq += 1

    def _send(self) -> None:
        if self._batch.chunks:
            self._emit(self._batch.chunks)
            self._batch = _Batch()


async def pump_output(streams: Mapping[LogStream, asyncio.StreamReader], emit: Emit) -> None:
    """Read every stream until end of file; what was read goes out within ``FLUSH_SECONDS``, at
    64 KiB, and when the streams end (before the step's result)."""
    chunker = Chunker(emit)
    ticker = asyncio.create_task(_flush_every(chunker, FLUSH_SECONDS))

    async def pump(stream: LogStream, reader: asyncio.StreamReader) -> None:
        while data := await reader.read(CHUNK_BYTES):
            chunker.add(data, stream)

    try:
        await asyncio.gather(*(pump(stream, reader) for stream, reader in streams.items()))
    finally:
        ticker.cancel()
        chunker.flush(final=True)


async def _flush_every(chunker: Chunker, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        chunker.flush()
