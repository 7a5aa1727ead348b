import { useState } from "react";
import { api, must, type Pod, type Pool } from "../api/client";
import { age } from "../format";
import { useAction, usePolled } from "../hooks";
import { Link } from "../router";
import { Badge, ErrorBox, Loading } from "./common";

function SlotCell({ slot }: { slot: Pod["slots"][number] | undefined }) {
  if (!slot) return <td className="slot slot-none" />;
  return (
    <td className={`slot slot-${slot.state}`}>
      <span className="slot-state">{slot.state}</span>
      {slot.task_id && (
        <Link to={`/tasks/${slot.task_id}`} className="mono small">
          {slot.task_id}
        </Link>
      )}
    </td>
  );
}

// Pods on their way out or gone: listed last, dimmed.
const LEAVING = new Set(["draining", "terminating", "deleted", "failed"]);
const leaving = (pod: Pod) => LEAVING.has(pod.state);

/** Why the Pod goes or went, in the server's words: calm for a deliberate end, red for a failure. */
function Outcome({ outcome }: { outcome: Pod["outcome"] }) {
  if (!outcome) return null;
  const kind = outcome.deliberate ? "outcome-deliberate" : "outcome-failure";
  return <div className={`small ${kind}`}>{outcome.text}</div>;
}

function PodRow({
  pod,
  columns,
  onDrain,
  draining,
}: {
  pod: Pod;
  columns: number;
  onDrain: (pod: Pod) => void;
  draining: boolean;
}) {
  const slots = Array.from({ length: columns }, (_, i) => pod.slots.find((s) => s.index === i));
  return (
    <tr className={leaving(pod) ? "ended" : undefined}>
      <th scope="row" className="mono">
        {pod.name}
      </th>
      <td>
        <Badge kind={pod.state}>{pod.state}</Badge>
        {pod.outdated && <Badge kind="outdated">outdated</Badge>}
        <Outcome outcome={pod.outcome} />
        {pod.reason && <div className="muted small">{pod.reason}</div>}
      </td>
      <td>{age(pod.created_at)}</td>
      <td>
        {pod.node ?? <span className="muted">-</span>}
        {pod.phase ? <div className="muted small">{pod.phase}</div> : null}
      </td>
      {slots.map((slot, i) => (
        <SlotCell key={i} slot={slot} />
      ))}
      <td>
        {!leaving(pod) && (
          <button
            type="button"
            className="secondary small"
            onClick={() => onDrain(pod)}
            disabled={draining}
            aria-label={`Drain ${pod.name}`}
          >
            Drain
          </button>
        )}
      </td>
    </tr>
  );
}

function minReplicas(pool: Pool): number {
  const value = pool.k8s_config?.min_replicas;
  return typeof value === "number" ? value : 0;
}

export function PodsPanel({ pool }: { pool: Pool }) {
  const pods = usePolled(
    () =>
      must(
        api.GET("/api/v1/agent-pools/{pool_id}/pods", {
          params: { path: { pool_id: pool.pool_id } },
        }),
      ),
    pool.pool_id,
    1000,
  );
  const syncing = useAction();
  const [syncResult, setSyncResult] = useState<string | null>(null);

  const sync = () =>
    syncing.run(async () => {
      const out = await must(
        api.POST("/api/v1/agent-pools/{pool_id}/sync-deployment", {
          params: { path: { pool_id: pool.pool_id } },
        }),
      );
      const parts = [
        out.created.length && `${out.created.length} created`,
        out.rebuilt.length && `${out.rebuilt.length} rebuilt`,
        out.removed.length && `${out.removed.length} removed`,
        out.ended.length && `${out.ended.length} ended`,
      ].filter(Boolean);
      setSyncResult(`${out.message}${parts.length ? `: ${parts.join(", ")}` : ""}.`);
      await pods.reload();
    });

  const drain = (pod: Pod) => {
    const question =
      `Drain Pod ${pod.name}? It takes no new task; its running tasks finish, then it is ` +
      "deleted. If the pool still needs a Pod, a new one is created in its place.";
    if (!window.confirm(question)) return;
    void syncing.run(async () => {
      const drained = await must(
        api.DELETE("/api/v1/agent-pools/{pool_id}/pods/{name}", {
          params: { path: { pool_id: pool.pool_id, name: pod.name } },
        }),
      );
      setSyncResult(`Pod ${drained.name} is ${drained.state}: ${drained.outcome?.text ?? ""}.`);
      await pods.reload();
    });
  };

  // Pods that can still run something first; those leaving (kept with their reason) last.
  const order = (pod: Pod) => (leaving(pod) ? 1 : 0);
  const items = [...(pods.data?.items ?? [])].sort((a, b) => order(a) - order(b));
  const columns = Math.max(0, ...items.map((p) => p.slots.length));
  return (
    <div>
      <div className="toolbar">
        <p className="muted">Updated every second.</p>
        {pool.pool_type !== "static" && (
          <button type="button" className="secondary" onClick={sync} disabled={syncing.busy}>
            Sync Pods now
          </button>
        )}
      </div>
      {syncResult && (
        <p role="status" className="ok">
          {syncResult}
        </p>
      )}
      <ErrorBox error={syncing.error ?? pods.error} />
      {pods.data === undefined ? (
        <Loading what="Pods" />
      ) : items.length === 0 ? (
        <p>
          No Pods.{" "}
          {pool.no_pods_reason
            ? `None can be created: ${pool.no_pods_reason}.`
            : pool.freeze.active
              ? "A freeze window is active: no Pod is created until it ends."
              : pool.pool_type === "static"
                ? "Start `slotpool agent` with a token of this pool."
                : `Pods are created when tasks are queued (and ${minReplicas(pool)} are kept by min_replicas).`}
        </p>
      ) : (
        <div className="scroll-x">
          <table className="data pods" aria-label="Pods and slots">
            <thead>
              <tr>
                <th scope="col">Pod</th>
                <th scope="col">State</th>
                <th scope="col">Age</th>
                <th scope="col">Node</th>
                {Array.from({ length: columns }, (_, i) => (
                  <th scope="col" key={i}>
                    Slot {i}
                  </th>
                ))}
                <th scope="col">
                  <span className="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {items.map((pod) => (
                <PodRow
                  key={pod.name}
                  pod={pod}
                  columns={columns}
                  onDrain={drain}
                  draining={syncing.busy}
                />
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}
