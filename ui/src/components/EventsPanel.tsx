import { useState } from "react";
import { api, must, type PoolEvent, type Pool } from "../api/client";
import { age, when } from "../format";
import { usePolled } from "../hooks";
import { Badge, ErrorBox, Loading } from "./common";

const PAGE_SIZES = [5, 20, 50, 100] as const;
const DEFAULT_PAGE_SIZE = 20;

type Json = Record<string, unknown>;

function object(value: unknown): Json | null {
  return value && typeof value === "object" && !Array.isArray(value) ? (value as Json) : null;
}

function count(value: unknown): number | null {
  return typeof value === "number" ? value : null;
}

/**
 * What the controller saw: `inputs.inputs` for a scaling decision (the plan's summary), or the
 * observation itself at the top level for some actions (e.g. revoke_token).
 */
function observation(inputs: Json): Json | null {
  const nested = object(inputs.inputs);
  if (nested) return nested;
  return "queued" in inputs || "min_replicas" in inputs ? inputs : null;
}

function InputsCell({ inputs }: { inputs: Json }) {
  const seen = observation(inputs);
  if (!seen) {
    // Not a scaling decision (e.g. rotate_token: {old, new}): its few fields as they are.
    const entries = Object.entries(inputs);
    if (entries.length === 0) return <span className="muted">-</span>;
    return (
      <span className="small">
        {entries.map(([key, value]) => `${key} ${typeof value === "string" ? value : JSON.stringify(value)}`).join(" · ")}
      </span>
    );
  }
  const pods = object(seen.pods);
  const live = pods
    ? Object.entries(pods).filter(([state, n]) => typeof n === "number" && n > 0 && state !== "failed" && state !== "deleted")
    : [];
  const podsTotal = live.reduce((sum, [, n]) => sum + (n as number), 0);
  const freeze = object(seen.freeze);
  const backoff = object(seen.backoff);
  const failures = count(backoff?.failures) ?? 0;
  const desired = count(inputs.desired_pods);
  const outdated = count(seen.outdated) ?? 0;
  return (
    <div className="inputs small">
      <div>
        queued {count(seen.queued) ?? "?"} · busy {count(seen.busy) ?? "?"} · reserved{" "}
        {count(seen.reserved) ?? "?"} · idle {count(seen.idle) ?? "?"} slots
      </div>
      <div>
        Pods {podsTotal}
        {live.length > 0 && ` (${live.map(([state, n]) => `${String(n)} ${state}`).join(", ")})`}
        {outdated > 0 && ` · ${outdated} outdated`}
        {desired !== null && ` · desired ${desired}`} · min..max {count(seen.min_replicas) ?? "?"}..
        {count(seen.max_replicas) ?? "?"}
      </div>
      {(freeze?.active === true || failures > 0) && (
        <div>
          {freeze?.active === true && (
            <Badge kind="frozen">
              frozen{typeof freeze.policy === "string" ? ` (${freeze.policy})` : ""}
            </Badge>
          )}
          {failures > 0 && (
            <Badge kind="failed">
              back-off: {failures} failure{failures === 1 ? "" : "s"}
            </Badge>
          )}
        </div>
      )}
    </div>
  );
}

function EventRow({ event }: { event: PoolEvent }) {
  const inputs = object(event.inputs) ?? {};
  return (
    <tr>
      <td className="nowrap" title={event.at}>
        {when(event.at)}
        <div className="muted small">{age(event.at)} ago</div>
      </td>
      <th scope="row" className="mono">
        {event.action}
      </th>
      <td className="mono">{event.reason}</td>
      <td>
        <Badge kind={`outcome-${event.outcome}`}>{event.outcome}</Badge>
      </td>
      <td className="mono small">
        {event.pod ? (
          event.pod.split(", ").map((name) => <div key={name}>{name}</div>)
        ) : (
          <span className="muted">-</span>
        )}
      </td>
      <td>
        <InputsCell inputs={inputs} />
        {Object.keys(inputs).length > 0 && (
          <details className="small">
            <summary>all inputs</summary>
            <pre className="inputs-json">{JSON.stringify(inputs, null, 1)}</pre>
          </details>
        )}
      </td>
      <td className="small">{event.message}</td>
    </tr>
  );
}

/** The controller's decisions for this pool, newest first: what it did, why, and what it saw. */
export function EventsPanel({ pool }: { pool: Pool }) {
  const [pageSize, setPageSize] = useState<number>(DEFAULT_PAGE_SIZE);
  // `before` of each page shown after the newest one; empty: the newest page, kept live.
  const [cursors, setCursors] = useState<number[]>([]);
  const before = cursors.length ? cursors[cursors.length - 1] : undefined;
  const live = before === undefined;
  const events = usePolled(
    () =>
      must(
        api.GET("/api/v1/agent-pools/{pool_id}/events", {
          params: {
            path: { pool_id: pool.pool_id },
            // One more than shown: whether an older page exists.
            query: before === undefined ? { limit: pageSize + 1 } : { limit: pageSize + 1, before },
          },
        }),
      ),
    `${pool.pool_id}/${pageSize}/${before ?? "live"}`,
    live ? 2000 : undefined,
  );
  const items = (events.data?.items ?? []).slice(0, pageSize);
  const total = events.data?.total ?? 0;
  const oldest = items.length ? items[items.length - 1]?.id : undefined;
  const hasOlder = oldest !== undefined && (events.data?.items.length ?? 0) > pageSize;

  return (
    <div>
      <div className="toolbar">
        <p className="muted">
          Why this pool scaled: each decision of the controller, what it saw and what it did.{" "}
          {live ? "Newest first, updated every 2 seconds." : "An older page (not updated)."}
        </p>
        <label className="inline">
          Per page{" "}
          <select
            value={pageSize}
            onChange={(e) => {
              setPageSize(Number(e.target.value));
              setCursors([]);
            }}
          >
            {PAGE_SIZES.map((size) => (
              <option key={size} value={size}>
                {size}
              </option>
            ))}
          </select>
        </label>
      </div>
      <ErrorBox error={events.error} />
      {events.data === undefined ? (
        events.error ? null : (
          <Loading what="the decision log" />
        )
      ) : items.length === 0 ? (
        <p className="muted">
          {live ? "No decision yet: the controller logs one when it creates, deletes or holds back a Pod." : "No older decision."}
        </p>
      ) : (
        <div className="scroll-x">
          <table className="data events" aria-label="Decision log">
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">Action</th>
                <th scope="col">Reason</th>
                <th scope="col">Outcome</th>
                <th scope="col">Pod</th>
                <th scope="col">Inputs</th>
                <th scope="col">Message</th>
              </tr>
            </thead>
            <tbody>
              {items.map((event) => (
                <EventRow key={event.id} event={event} />
              ))}
            </tbody>
          </table>
        </div>
      )}
      <nav className="pager" aria-label="Decision log pages">
        <span className="muted small" role="status">
          {events.data &&
            `Page ${cursors.length + 1} · ${total} decision${total === 1 ? "" : "s"} in all`}
        </span>
        <button
          type="button"
          className="secondary small"
          disabled={live}
          onClick={() => setCursors([])}
        >
          Newest
        </button>
        <button
          type="button"
          className="secondary small"
          disabled={live}
          onClick={() => setCursors(cursors.slice(0, -1))}
        >
          Newer
        </button>
        <button
          type="button"
          className="secondary small"
          disabled={!hasOlder}
          onClick={() => oldest !== undefined && setCursors([...cursors, oldest])}
        >
          Older
        </button>
      </nav>
    </div>
  );
}
