import { api, must, type Pool } from "../api/client";
import { Badge, ErrorBox, Loading } from "../components/common";
import { ConfigPanel } from "../components/ConfigPanel";
import { EventsPanel } from "../components/EventsPanel";
import { FreezePanel } from "../components/FreezePanel";
import { HistoryChart } from "../components/HistoryChart";
import { PodsPanel } from "../components/PodsPanel";
import { TasksPanel } from "../components/TasksPanel";
import { TokensPanel } from "../components/TokensPanel";
import { useAction, usePolled } from "../hooks";
import { Link, navigate } from "../router";
import { SlotCounts } from "./PoolsList";

const TABS = [
  { id: "pods", label: "Pods" },
  { id: "events", label: "Decision log" },
  { id: "config", label: "Configuration" },
  { id: "freeze", label: "Freeze windows" },
  { id: "tasks", label: "Tasks" },
  { id: "tokens", label: "Tokens" },
] as const;

function Summary({ pool }: { pool: Pool }) {
  return (
    <dl className="summary">
      <div>
        <dt>Type</dt>
        <dd>{pool.pool_type}</dd>
      </div>
      <div>
        <dt>Pods ready / total</dt>
        <dd>
          {pool.pods_ready} / {pool.pods_total}
        </dd>
      </div>
      <div>
        <dt>Slots</dt>
        <dd>
          <SlotCounts pool={pool} />
        </dd>
      </div>
      <div>
        <dt>Queued tasks</dt>
        <dd>{pool.queued_tasks}</dd>
      </div>
      <div>
        <dt>Freeze</dt>
        <dd>
          {pool.freeze.active ? (
            <Badge kind="frozen">frozen</Badge>
          ) : pool.freeze.lifted_until ? (
            <Badge kind="lifted">lifted</Badge>
          ) : (
            "none active"
          )}
        </dd>
      </div>
    </dl>
  );
}

function NoPods({ reason }: { reason: string }) {
  return (
    <div className="state-box no-pods" role="status" aria-label="Why no Pods">
      <p>
        <Badge kind="no-pods">no Pods</Badge> This server creates no Pods for this pool: {reason}.
      </p>
      <p className="muted small">Its queued tasks wait, and say so.</p>
    </div>
  );
}

function DeletePool({ pool }: { pool: Pool }) {
  const { busy, error, run } = useAction();
  const remove = () => {
    if (!window.confirm(`Delete pool ${pool.name}? This cannot be undone.`)) return;
    void run(async () => {
      await must(
        api.DELETE("/api/v1/agent-pools/{pool_id}", { params: { path: { pool_id: pool.pool_id } } }),
      );
      navigate("/");
    });
  };
  return (
    <div className="danger-zone">
      <button type="button" className="danger" onClick={remove} disabled={busy}>
        Delete pool {pool.name}
      </button>
      <ErrorBox error={error} />
    </div>
  );
}

export function PoolDetail({ poolId, tab }: { poolId: string; tab: string }) {
  const pool = usePolled(
    () => must(api.GET("/api/v1/agent-pools/{pool_id}", { params: { path: { pool_id: poolId } } })),
    poolId,
    2000,
  );
  const current = TABS.find((t) => t.id === tab) ?? TABS[0];
  return (
    <section>
      <p className="crumbs">
        <Link to="/">Pools</Link> /
      </p>
      <h1>
        {pool.data?.name ?? poolId}{" "}
        <span className="muted small mono" title="pool id">
          {poolId}
        </span>
      </h1>
      <ErrorBox error={pool.error} />
      {pool.data?.no_pods_reason && <NoPods reason={pool.data.no_pods_reason} />}
      {pool.data ? <Summary pool={pool.data} /> : <Loading what="the pool" />}
      {pool.data && <HistoryChart pool={pool.data} />}
      <nav className="tabs" aria-label="Pool sections">
        {TABS.map((t) => (
          <Link
            key={t.id}
            to={`/pools/${poolId}/${t.id}`}
            aria-current={t.id === current.id ? "page" : undefined}
          >
            {t.label}
          </Link>
        ))}
      </nav>
      {pool.data && (
        <div className="panel">
          {current.id === "pods" && <PodsPanel pool={pool.data} />}
          {current.id === "events" && <EventsPanel pool={pool.data} />}
          {current.id === "config" && <ConfigPanel pool={pool.data} onSaved={pool.reload} />}
          {current.id === "freeze" && <FreezePanel pool={pool.data} onChange={pool.reload} />}
          {current.id === "tasks" && <TasksPanel pool={pool.data} />}
          {current.id === "tokens" && <TokensPanel pool={pool.data} onChange={pool.reload} />}
        </div>
      )}
      {pool.data && current.id === "pods" && <DeletePool pool={pool.data} />}
    </section>
  );
}
