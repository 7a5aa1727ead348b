import { useEffect, useRef, useState } from "react";
import { api, must, type Task } from "../api/client";
import { ErrorBox, Loading } from "../components/common";
import { isFinal, StatusBadge } from "../components/TasksPanel";
import { clock, when } from "../format";
import { useAction, usePolled } from "../hooks";
import { Link } from "../router";

/** One stored piece of a step's output, as the log's ndjson format gives it. */
type LogChunk = {
  id: number;
  step_index: number;
  seq: number;
  stream: "stdout" | "stderr";
  data: string;
  at: string;
};

/** The chunks in the lines of an ndjson log (`{"type": "task"}` lines are skipped: the task
 * itself is polled). Returns what is left of an unfinished last line. */
function parseLines(text: string, into: LogChunk[]): string {
  const lines = text.split("\n");
  const rest = lines.pop() ?? "";
  for (const line of lines) {
    if (!line.trim()) continue;
    const parsed = JSON.parse(line) as { type?: string } & LogChunk;
    if (parsed.type === "log") into.push(parsed);
  }
  return rest;
}

/** Follows the task's log: the server streams it until the task ends; reconnects if cut, from
 * the last chunk it has. */
function useLog(taskId: string): { chunks: LogChunk[]; following: boolean; error: unknown } {
  const [chunks, setChunks] = useState<LogChunk[]>([]);
  const [following, setFollowing] = useState(true);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    const abort = new AbortController();
    let stopped = false;
    const received: LogChunk[] = [];
    setChunks([]);
    setFollowing(true);
    (async () => {
      for (let attempt = 0; !stopped; attempt++) {
        try {
          const after = received.at(-1)?.id ?? 0;
          const { data, response } = await api.GET("/api/v1/tasks/{task_id}/logs", {
            params: { path: { task_id: taskId }, query: { follow: true, format: "ndjson", after } },
            parseAs: "stream",
            signal: abort.signal,
          });
          if (!response.ok || !data) throw new Error(`log stream: HTTP ${response.status}`);
          setError(null);
          const reader = data.pipeThrough(new TextDecoderStream()).getReader();
          let pending = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            const before = received.length;
            pending = parseLines(pending + value, received);
            if (received.length !== before) setChunks([...received]);
          }
          // The stream ends when the task has ended.
          const task = await must(
            api.GET("/api/v1/tasks/{task_id}", { params: { path: { task_id: taskId } } }),
          );
          if (isFinal(task)) break;
        } catch (caught) {
          if (stopped) return;
          setError(caught);
        }
        await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 500 * (attempt + 1))));
      }
      if (!stopped) setFollowing(false);
    })();
    return () => {
      stopped = true;
      abort.abort();
    };
  }, [taskId]);
  return { chunks, following, error };
}

/** A chunk's lines, each stamped with the time the chunk was stored. */
function ChunkLines({ chunk }: { chunk: LogChunk }) {
  const lines = chunk.data.replace(/\n$/, "").split("\n");
  const stamp = clock(chunk.at);
  return (
    <>
      {lines.map((line, i) => (
        <span key={i} className={chunk.stream === "stderr" ? "log-line stderr" : "log-line"}>
          <time className="log-time" dateTime={chunk.at}>
            {stamp}
          </time>
          {chunk.stream === "stderr" && <span className="log-stream">err</span>}
          {line}
          {"\n"}
        </span>
      ))}
    </>
  );
}

function StepLog({
  task,
  index,
  chunks,
  following,
}: {
  task: Task | undefined;
  index: number;
  chunks: LogChunk[];
  following: boolean;
}) {
  const step = task?.steps[index];
  const result = task ? history(task).results.get(index) : undefined;
  const running = task !== undefined && index === task.current_step && !isFinal(task);
  const status = result?.status ?? (running ? task?.status.replaceAll("_", " ") : undefined);
  const [open, setOpen] = useState(true);
  const preRef = useRef<HTMLPreElement>(null);
  useEffect(() => {
    const el = preRef.current;
    if (el && following) el.scrollTop = el.scrollHeight;
  }, [chunks.length, following]);
  return (
    <details
      className="step-log"
      open={open}
      onToggle={(e) => setOpen(e.currentTarget.open)}
      data-testid={`step-log-${index}`}
    >
      <summary>
        <span className="step-title">
          Step {index + 1}
          {step?.name ? `: ${step.name}` : ""}
        </span>{" "}
        {status && <StatusBadge status={status.replaceAll(" ", "_")} />}
        {typeof result?.exit_code === "number" && (
          <span className="muted small"> exit {result.exit_code}</span>
        )}
        <span className="muted small">
          {" "}
          {chunks.length ? `${clock(chunks[0]!.at)} – ${clock(chunks.at(-1)!.at)}` : "no output"}
        </span>
      </summary>
      <pre ref={preRef} className="code log" tabIndex={0} aria-label={`Output of step ${index + 1}`}>
        {chunks.length
          ? chunks.map((chunk) => <ChunkLines key={chunk.id} chunk={chunk} />)
          : running
            ? "(no output yet)"
            : "(no output)"}
      </pre>
    </details>
  );
}

/** The log in one collapsible section per step (every step that has output or has run). */
function Log({ task, chunks, following }: { task: Task | undefined; chunks: LogChunk[]; following: boolean }) {
  const byStep = new Map<number, LogChunk[]>();
  for (const chunk of chunks) {
    const list = byStep.get(chunk.step_index) ?? [];
    list.push(chunk);
    byStep.set(chunk.step_index, list);
  }
  const reached = task ? (isFinal(task) ? -1 : task.current_step) : -1;
  const done = task ? history(task).results : new Map<number, StepResult>();
  const shown = new Set<number>([...byStep.keys(), ...done.keys()]);
  if (reached >= 0 && task?.status !== "queued") shown.add(reached);
  const steps = [...shown].sort((a, b) => a - b);
  if (steps.length === 0) {
    return <p className="muted" data-testid="task-log">{following ? "(no output yet)" : "(no output)"}</p>;
  }
  return (
    <div role="log" aria-labelledby="log-title" data-testid="task-log">
      {steps.map((index) => (
        <StepLog
          key={index}
          task={task}
          index={index}
          chunks={byStep.get(index) ?? []}
          following={following}
        />
      ))}
    </div>
  );
}

type StepResult = { step_index?: number; status?: string; exit_code?: number | null };
type Approval = { approved_by?: string; approved_at?: string };

/** `results` is the task's history: one entry per finished step, and one per approval (which
 * lets the step after the last finished one run). */
function history(task: Task) {
  const results = new Map<number, StepResult>();
  const approvals = new Map<number, Approval>();
  let last = -1;
  for (const entry of task.results as (StepResult & Approval)[]) {
    if (typeof entry.step_index === "number") {
      results.set(entry.step_index, entry);
      last = entry.step_index;
    } else if (entry.approved_by) {
      approvals.set(last + 1, entry);
    }
  }
  return { results, approvals };
}

function Steps({ task }: { task: Task }) {
  const { results, approvals } = history(task);
  return (
    <table className="data">
      <caption className="visually-hidden">Steps</caption>
      <thead>
        <tr>
          <th scope="col">#</th>
          <th scope="col">Step</th>
          <th scope="col">Command</th>
          <th scope="col">Approval</th>
          <th scope="col">Result</th>
        </tr>
      </thead>
      <tbody>
        {task.steps.map((step, i) => {
          const result = results.get(i);
          const approval = approvals.get(i);
          const current = i === task.current_step && !isFinal(task);
          return (
            <tr key={i} aria-current={current ? "step" : undefined}>
              <td>{i + 1}</td>
              <td>{step.name}</td>
              <td className="mono small">{step.run ?? step.command?.join(" ")}</td>
              <td>
                {!step.requires_approval
                  ? "-"
                  : approval
                    ? `approved by ${approval.approved_by}`
                    : current && task.status === "awaiting_approval"
                      ? "waiting"
                      : "required"}
              </td>
              <td>
                {result?.status ? (
                  <>
                    {result.status}
                    {typeof result.exit_code === "number" ? ` (exit ${result.exit_code})` : ""}
                  </>
                ) : current && task.status === "running" ? (
                  "running"
                ) : (
                  <span className="muted">-</span>
                )}
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

export function TaskPage({ taskId }: { taskId: string }) {
  const task = usePolled(
    () => must(api.GET("/api/v1/tasks/{task_id}", { params: { path: { task_id: taskId } } })),
    taskId,
    1000,
  );
  const log = useLog(taskId);
  const acting = useAction();

  const act = (action: "approve" | "cancel") =>
    acting.run(async () => {
      const path = { task_id: taskId };
      if (action === "approve") {
        await must(api.POST("/api/v1/tasks/{task_id}/approve", { params: { path } }));
      } else {
        await must(api.POST("/api/v1/tasks/{task_id}/cancel", { params: { path } }));
      }
      await task.reload();
    });

  const t = task.data;
  return (
    <section>
      <p className="crumbs">
        <Link to="/">Pools</Link> /{" "}
        {t && (
          <>
            <Link to={`/pools/${t.pool_id}/tasks`}>pool tasks</Link> /
          </>
        )}
      </p>
      <h1>
        {t?.name || taskId} {t && <StatusBadge status={t.status} />}
      </h1>
      <ErrorBox error={task.error ?? acting.error} />
      {!t ? (
        <Loading what="the task" />
      ) : (
        <>
          <dl className="summary">
            <div>
              <dt>Task id</dt>
              <dd className="mono">{t.id}</dd>
            </div>
            <div>
              <dt>Pod / slot</dt>
              <dd className="mono">
                {t.pod_name ? `${t.pod_name} / ${t.slot_index ?? "-"}` : "-"}
              </dd>
            </div>
            <div>
              <dt>Submitted</dt>
              <dd>{when(t.created_at)}</dd>
            </div>
            <div>
              <dt>Finished</dt>
              <dd>{when(t.finished_at)}</dd>
            </div>
            {t.reserved_until && !isFinal(t) && (
              <div>
                <dt>Slot reserved until</dt>
                <dd>{when(t.reserved_until)}</dd>
              </div>
            )}
          </dl>
          {t.reason && <p className="reason">{t.reason}</p>}
          <div className="actions">
            {t.status === "awaiting_approval" && (
              <button type="button" onClick={() => act("approve")} disabled={acting.busy}>
                Approve step {t.current_step + 1}
              </button>
            )}
            {!isFinal(t) && (
              <button
                type="button"
                className="danger"
                onClick={() => act("cancel")}
                disabled={acting.busy || t.cancel_requested}
              >
                {t.cancel_requested ? "Cancelling…" : "Cancel task"}
              </button>
            )}
          </div>
          <Steps task={t} />
        </>
      )}
      <h2 id="log-title">
        Log{" "}
        <span className="muted small">{log.following ? "following live" : "complete"}</span>
      </h2>
      <ErrorBox error={log.error} />
      <Log task={t} chunks={log.chunks} following={log.following} />
    </section>
  );
}
