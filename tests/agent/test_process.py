"""A step as a real process group: output chunks, exit statuses, time limits and cancellation."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from pathlib import Path

from slotpool.agent.process import (
    CHUNK_BYTES,
    FLUSH_SECONDS,
    Cancellation,
    Chunker,
    StepOutcome,
    run_process,
)
from slotpool.domain.tasks import LogStream, OutputChunk, StepStatus
from slotpool.protocol import MAX_LOG_BATCH, MAX_MESSAGE, StepResult
from tests.agent.helpers import read_pid, wait_until
from tests.support.processes import alive

# A child shell that starts a grandchild and waits for it: both must go when the step is stopped.
FAMILY = "sleep 60 & echo $! > grandchild.pid; echo $$ > child.pid; wait"


class Output:
    def __init__(self) -> None:
        self.chunks: list[tuple[int, str, float]] = []
        self.streams: list[LogStream] = []
        self.batches: list[list[OutputChunk]] = []

    def __call__(self, chunks: Sequence[OutputChunk]) -> None:
        self.batches.append(list(chunks))
        for chunk in chunks:
            self.chunks.append((chunk.seq, chunk.data, time.monotonic()))
            self.streams.append(chunk.stream)

    @property
    def text(self) -> str:
        return "".join(data for _, data, _ in self.chunks)

    def of(self, stream: LogStream) -> str:
        return "".join(c[1] for c, s in zip(self.chunks, self.streams, strict=True) if s is stream)


async def run(
    script: str,
    cwd: Path,
    *,
    output: Output | None = None,
    time_limit: float | None = None,
    grace: float = 1.0,
    cancellation: Cancellation | None = None,
) -> StepOutcome:
    return await run_process(
        ["/bin/sh", "-c", script],
        cwd=cwd,
        env=dict(os.environ),
        time_limit=time_limit,
        grace=grace,
        cancellation=cancellation or Cancellation(),
        emit=output or Output(),
    )


async def test_output_arrives_as_ordered_chunks_while_the_step_runs(tmp_path: Path) -> None:
    output = Output()
    started = time.monotonic()
    outcome = await run("echo first; sleep 1.2; echo second 1>&2", tmp_path, output=output)
    assert outcome == StepOutcome(StepStatus.succeeded, 0, "exited with code 0")
    assert output.text == "first\nsecond\n"  # one log, in the order it was written
    assert output.streams == [LogStream.stdout, LogStream.stderr]
    assert [seq for seq, _, _ in output.chunks] == list(range(len(output.chunks)))
    first_at = output.chunks[0][2] - started
    assert output.chunks[0][1] == "first\n"
    assert first_at < 1.0  # shipped before the step ended


async def test_stdout_and_stderr_stay_apart_in_the_order_they_were_written(
    tmp_path: Path,
) -> None:
    output = Output()
    script = "echo out1; echo err1 >&2; sleep 0.1; echo out2; sleep 0.1; echo err2 >&2"
    outcome = await run(script, tmp_path, output=output)
    assert outcome.status is StepStatus.succeeded
    assert output.of(LogStream.stdout) == "out1\nout2\n"
    assert output.of(LogStream.stderr) == "err1\nerr2\n"
    assert output.text.index("out2") < output.text.index("err2")
    assert [seq for seq, _, _ in output.chunks] == list(range(len(output.chunks)))


def test_a_character_cut_on_each_stream_is_decoded_on_its_own() -> None:
    output = Output()
    chunker = Chunker(output)
    chunker.add("é".encode()[:1], LogStream.stdout)
    chunker.add("ü".encode()[:1], LogStream.stderr)
    chunker.add("é".encode()[1:], LogStream.stdout)
    chunker.add("ü".encode()[1:], LogStream.stderr)
    chunker.flush(final=True)
    assert (output.of(LogStream.stdout), output.of(LogStream.stderr)) == ("é", "ü")


async def test_large_output_is_cut_into_64_kib_chunks(tmp_path: Path) -> None:
    output = Output()
    outcome = await run("head -c 200000 /dev/zero | tr '\\0' x", tmp_path, output=output)
    assert outcome.status is StepStatus.succeeded
    assert output.text == "x" * 200_000
    assert all(len(data.encode()) <= CHUNK_BYTES for _, data, _ in output.chunks)
    assert all(sum(len(c.data.encode()) for c in b) <= CHUNK_BYTES for b in output.batches)
    assert [seq for seq, _, _ in output.chunks] == list(range(len(output.chunks)))


async def test_lines_of_both_streams_go_out_in_a_few_batches(tmp_path: Path) -> None:
    output = Output()
    script = "for i in $(seq 200); do echo out $i; echo err $i >&2; sleep 0.002; done"
    started = time.monotonic()
    outcome = await run(script, tmp_path, output=output)
    took = time.monotonic() - started
    assert outcome.status is StepStatus.succeeded
    assert output.of(LogStream.stdout) == "".join(f"out {i}\n" for i in range(1, 201))
    assert output.of(LogStream.stderr) == "".join(f"err {i}\n" for i in range(1, 201))
    assert [seq for seq, _, _ in output.chunks] == list(range(len(output.chunks)))
    assert len(output.chunks) >= 100  # the streams alternated: a chunk per switch
    # A batch a flush (every FLUSH_SECONDS, and at the end), not a request per chunk.
    assert len(output.batches) <= took / FLUSH_SECONDS + 2, [len(b) for b in output.batches]


def test_a_batch_holds_at_most_64_kib_of_output_in_at_most_max_log_batch_chunks() -> None:
    output = Output()
    chunker = Chunker(output, limit=10)
    chunker.add(b"12345678")
    chunker.add(b"abc", LogStream.stderr)  # 11 bytes with the first chunk: a batch of its own
    chunker.flush()
    assert [[c.data for c in batch] for batch in output.batches] == [["12345678"], ["abc"]]

    many = Output()
    chunker = Chunker(many)
    for i in range(MAX_LOG_BATCH + 1):
        chunker.add(b"x", LogStream.stderr if i % 2 else LogStream.stdout)
    chunker.flush(final=True)
    assert [len(batch) for batch in many.batches] == [MAX_LOG_BATCH, 1]
    assert many.text == "x" * (MAX_LOG_BATCH + 1)


def test_chunks_decode_utf8_across_reads_and_replace_what_cannot_be_stored() -> None:
    output = Output()
    chunker = Chunker(output, limit=4)
    chunker.add("é".encode()[:1])
    chunker.flush()
    chunker.add("é".encode()[1:] + b"\xff\x00ok")
    chunker.flush(final=True)
    assert output.text == "é\ufffd\ufffdok"
    assert [seq for seq, _, _ in output.chunks] == list(range(len(output.chunks)))


async def test_exit_codes_map_to_statuses(tmp_path: Path) -> None:
    assert await run("exit 0", tmp_path) == StepOutcome(
        StepStatus.succeeded, 0, "exited with code 0"
    )
    assert await run("exit 3", tmp_path) == StepOutcome(StepStatus.failed, 3, "exited with code 3")
    killed = await run("kill -9 $$", tmp_path)
    assert killed == StepOutcome(StepStatus.failed, None, "killed by signal SIGKILL")


async def test_a_command_that_cannot_start_fails(tmp_path: Path) -> None:
    outcome = await run_process(
        ["/nonexistent/tool"],
        cwd=tmp_path,
        env={},
        time_limit=None,
        grace=1,
        cancellation=Cancellation(),
        emit=Output(),
    )
    assert outcome.status is StepStatus.failed
    assert outcome.exit_code is None
    assert "cannot start" in outcome.message


async def test_a_time_limit_stops_the_whole_process_group(tmp_path: Path) -> None:
    started = time.monotonic()
    outcome = await run(FAMILY, tmp_path, time_limit=0.5)
    assert outcome.status is StepStatus.timed_out
    assert outcome.message == "timed out after 0.5 s"
    assert time.monotonic() - started < 3
    for name in ("child.pid", "grandchild.pid"):
        assert not alive(await read_pid(tmp_path / name)), name


async def test_what_ignores_sigterm_gets_sigkill_after_the_grace_period(tmp_path: Path) -> None:
    started = time.monotonic()
    outcome = await run(f"trap '' TERM; {FAMILY}", tmp_path, time_limit=0.3, grace=0.5)
    assert outcome.status is StepStatus.timed_out
    assert 0.8 <= time.monotonic() - started < 3
    for name in ("child.pid", "grandchild.pid"):
        assert not alive(await read_pid(tmp_path / name)), name


async def test_cancel_stops_the_process_group(tmp_path: Path) -> None:
    cancellation = Cancellation()
    step = asyncio.create_task(run(FAMILY, tmp_path, cancellation=cancellation))
    grandchild = await read_pid(tmp_path / "grandchild.pid")
    cancellation.request("cancelled on request")
    outcome = await step
    assert outcome.status is StepStatus.cancelled
    assert outcome.message == "cancelled on request"
    # A killed process is gone a moment later, not at once.
    await wait_until(lambda: not alive(grandchild), seconds=5)
    leftover = await read_pid(tmp_path / "child.pid")
    # A killed process is gone a moment later, not at once.
    await wait_until(lambda: not alive(leftover), seconds=5)


async def test_a_step_cancelled_before_it_starts_does_not_run(tmp_path: Path) -> None:
    cancellation = Cancellation()
    cancellation.request("the agent shut down")
    outcome = await run("touch ran", tmp_path, cancellation=cancellation)
    assert outcome == StepOutcome(StepStatus.cancelled, None, "the agent shut down")
    assert not (tmp_path / "ran").exists()


async def test_leftovers_of_a_finished_step_are_killed(tmp_path: Path) -> None:
    # The background sleep keeps the output pipe open: the step must end anyway, and take it along.
    started = time.monotonic()
    outcome = await run("sleep 60 & echo $! > leftover.pid; exit 0", tmp_path)
    assert outcome.status is StepStatus.succeeded
    assert time.monotonic() - started < 3
    leftover = await read_pid(tmp_path / "leftover.pid")
    # A killed process is gone a moment later, not at once.
    await wait_until(lambda: not alive(leftover), seconds=5)


async def test_an_agent_that_stops_kills_its_running_steps(tmp_path: Path) -> None:
    step = asyncio.create_task(run(FAMILY, tmp_path))
    grandchild = await read_pid(tmp_path / "grandchild.pid")
    step.cancel()
    await asyncio.gather(step, return_exceptions=True)
    assert step.cancelled()
    # A killed process is gone a moment later, not at once.
    await wait_until(lambda: not alive(grandchild), seconds=5)


def test_an_outcome_is_reported_as_a_result_the_control_plane_accepts() -> None:
    outcome = StepOutcome(StepStatus.failed, None, "bad\x00path \udcff " + "x" * 5000)
    result = outcome.result()
    assert (result.status, result.exit_code) == (StepStatus.failed, None)
    assert result.message.startswith("bad\ufffdpath ? x")
    assert len(result.message) == MAX_MESSAGE
    # What the agent sends is what the control plane's route reads.
    assert StepResult.model_validate(result.model_dump(mode="json")) == result
