// Tasks across pools: filtered by pool, status and submitter (kept in the address, so a filtered
// view can be bookmarked or shared), with how long each waited for a slot and how long it ran.
import { useState } from "react";
import { api, must, type Schemas, type Task } from "../api/client";
import { ErrorBox, Loading } from "../components/common";
import { isFinal, StatusBadge } from "../components/TasksPanel";
import { duration, span, when } from "../format";
import { useDebounced, usePolled } from "../hooks";
import { Link } from "../router";

type TaskStatus = Schemas["TaskStatus"];
const STATUSES: TaskStatus[] = [
  "queued",
  "running",
  "awaiting_approval",
  "succeeded",
  "failed",
  "cancelled",
  "timed_out",
  "lost",
  "expired",
];
const PAGE = 100;
const REFRESH_MS = 3000;

type Filters = { pool: string; status: string; submitter: string };

function filtersFromAddress(): Filters {
  const query = new URLSearchParams(window.location.search);
  return {
    pool: query.get("pool") ?? "",
    status: query.get("status") ?? "",
    submitter: query.get("submitter") ?? "",
  };
}

function keepInAddress(filters: Filters): void {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(filters)) if (value) query.set(key, value);
  const search = query.toString();
  window.history.replaceState(null, "", `/tasks${search ? `?${search}` : ""}`);
}

function Durations({ task, now }: { task: Task; now: number }) {
  const wait = span(task.created_at, task.started_at ?? (isFinal(task) ? task.finished_at : null), now);
  const run = span(task.started_at, task.finished_at, now);
  return (
    <>
      <td className="num" data-testid="wait">
        {wait === undefined ? "-" : duration(wait)}
      </td>
      <td className="num" data-testid="run">
        {run === undefined ? "-" : duration(run)}
        {run !== undefined && !task.finished_at && <span className="muted small"> so far</span>}
      </td>
    </>
  );
}

export function TasksList() {
  const [filters, setFilters] = useState<Filters>(filtersFromAddress);
  const submitter = useDebounced(filters.submitter.trim(), 300);
  const pools = usePolled(
    () => must(api.GET("/api/v1/agent-pools", { params: { query: { limit: 1000 } } })),
    "pools",
  );
  const key = JSON.stringify([filters.pool, filters.status, submitter]);
  const tasks = usePolled(
    () =>
      must(
        api.GET("/api/v1/tasks", {
          params: {
            query: {
              pool_id: filters.pool || undefined,
              status: (filters.status || undefined) as TaskStatus | undefined,
              created_by: submitter || undefined,
              limit: PAGE,
            },
          },
        }),
      ),
    key,
    REFRESH_MS,
  );
  const change = (change: Partial<Filters>) => {
    const next = { ...filters, ...change };
    setFilters(next);
    keepInAddress(next);
  };
  const poolName = new Map((pools.data?.items ?? []).map((p) => [p.pool_id, p.name]));
  const now = Date.now();
  const list = tasks.data;

  return (
    <section>
      <h1>Tasks</h1>
      <form className="filters" role="search" aria-label="Filter tasks" onSubmit={(e) => e.preventDefault()}>
        <label>
          Pool
          <select value={filters.pool} onChange={(e) => change({ pool: e.target.value })}>
            <option value="">All pools</option>
            {(pools.data?.items ?? []).map((p) => (
              <option key={p.pool_id} value={p.pool_id}>
                {p.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          Status
          <select value={filters.status} onChange={(e) => change({ status: e.target.value })}>
            <option value="">Any status</option>
            {STATUSES.map((s) => (
              <option key={s} value={s}>
                {s.replaceAll("_", " ")}
              </option>
            ))}
          </select>
        </label>
        <label>
          Submitter
          <input
            type="search"
            value={filters.submitter}
            placeholder="token name, e.g. ci"
            onChange={(e) => change({ submitter: e.target.value })}
          />
        </label>
        <span className="muted small">refreshes every {REFRESH_MS / 1000}s</span>
      </form>
      <ErrorBox error={tasks.error ?? pools.error} />
      {!list ? (
        <Loading what="the tasks" />
      ) : list.items.length === 0 ? (
        <p className="muted" data-testid="no-tasks">
          No tasks match these filters.
        </p>
      ) : (
        <>
          <p className="muted small" data-testid="task-count">
            {list.total > list.items.length
              ? `The newest ${list.items.length} of ${list.total} tasks.`
              : `${list.total} task${list.total === 1 ? "" : "s"}.`}
          </p>
          <table className="data" aria-label="Tasks">
            <thead>
              <tr>
                <th scope="col">Task</th>
                <th scope="col">Pool</th>
                <th scope="col">Status</th>
                <th scope="col">Submitter</th>
                <th scope="col">Submitted</th>
                <th scope="col" title="From submission until a slot started it">
                  Wait
                </th>
                <th scope="col">Run time</th>
              </tr>
            </thead>
            <tbody>
              {list.items.map((task) => (
                <tr key={task.id}>
                  <td>
                    <Link to={`/tasks/${task.id}`}>{task.name || task.id}</Link>
                    {task.reason && !isFinal(task) && (
                      <div className="muted small">{task.reason}</div>
                    )}
                  </td>
                  <td>
                    <Link to={`/pools/${task.pool_id}/tasks`}>
                      {poolName.get(task.pool_id) ?? task.pool_id}
                    </Link>
                  </td>
                  <td>
                    <StatusBadge status={task.status} />
                  </td>
                  <td>{task.created_by}</td>
                  <td>{when(task.created_at)}</td>
                  <Durations task={task} now={now} />
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
