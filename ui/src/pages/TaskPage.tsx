import { useEffect, useRef, useState } from "react";
import { api, must, type Task } from "../api/client";
import { ErrorBox, Loading } from "../components/common";
import { isFinal, StatusBadge } from "../components/TasksPanel";
import { when } from "../format";
import { useAction, usePolled } from "../hooks";
import { Link } from "../router";

/** Follows the task's log: the server streams it until the task ends; reconnects if cut. */
function useLog(taskId: string): { text: string; following: boolean; error: unknown } {
  const [text, setText] = useState("");
  const [following, setFollowing] = useState(true);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    const abort = new AbortController();
    let stopped = false;
    (async () => {
      for (let attempt = 0; !stopped; attempt++) {
        try {
          const { data, response } = await api.GET("/api/v1/tasks/{task_id}/logs", {
            params: { path: { task_id: taskId }, query: { follow: true } },
            parseAs: "stream",
            signal: abort.signal,
          });
          if (!response.ok || !data) throw new Error(`log stream: HTTP ${response.status}`);
          // Every connection replays the log from the start.
          let received = "";
          setText("");
          setError(null);
          const reader = data.pipeThrough(new TextDecoderStream()).getReader();
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            received += value;
            setText(received);
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
  return { text, following, error };
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
  const logRef = useRef<HTMLPreElement>(null);

  useEffect(() => {
    const el = logRef.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [log.text]);

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
      <pre
        ref={logRef}
        className="code log"
        role="log"
        aria-labelledby="log-title"
        tabIndex={0}
        data-testid="task-log"
      >
        {log.text || (log.following ? "(no output yet)" : "(no output)")}
      </pre>
    </section>
  );
}
