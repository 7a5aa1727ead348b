import { useState, type FormEvent } from "react";
import { api, ApiError, must, type ErrorDetail, type Pool, type Schemas } from "../api/client";
import { Badge, ErrorBox, Field, Loading } from "../components/common";
import { useAction, usePolled } from "../hooks";
import { Link, navigate } from "../router";

type PoolType = Schemas["PoolType"];
const POOL_TYPES: { value: PoolType; label: string }[] = [
  { value: "local", label: "local: agent processes on the slotpool host" },
  { value: "k8s", label: "k8s: one bare Pod per agent in a cluster" },
  { value: "static", label: "static: agents you start yourself" },
];

export function SlotCounts({ pool }: { pool: Pool }) {
  return (
    <>
      {pool.slots_busy} busy
      {pool.slots_reserved ? ` + ${pool.slots_reserved} reserved` : ""} / {pool.slots_total}
    </>
  );
}

function PoolRow({ pool }: { pool: Pool }) {
  return (
    <tr>
      <th scope="row">
        <Link to={`/pools/${pool.pool_id}`}>{pool.name}</Link>
        {pool.description ? <div className="muted small">{pool.description}</div> : null}
      </th>
      <td>{pool.pool_type}</td>
      <td>
        {pool.pods_ready} / {pool.pods_total}
        {pool.no_pods_reason && (
          <div>
            <span title={pool.no_pods_reason}>
              <Badge kind="no-pods">no Pods</Badge>
            </span>
          </div>
        )}
      </td>
      <td>
        <SlotCounts pool={pool} />
      </td>
      <td>{pool.queued_tasks}</td>
      <td>
        {pool.freeze.active ? (
          <Badge kind="frozen">frozen</Badge>
        ) : pool.freeze.lifted_until ? (
          <Badge kind="lifted">freeze lifted</Badge>
        ) : (
          <span className="muted">-</span>
        )}
      </td>
    </tr>
  );
}

function CreatePool({ onCreated }: { onCreated: (pool: Pool) => void }) {
  const [name, setName] = useState("");
  const [poolType, setPoolType] = useState<PoolType>("local");
  const { busy, error, run } = useAction();

  const submit = (event: FormEvent) => {
    event.preventDefault();
    void run(async () => {
      const pool = await must(
        api.POST("/api/v1/agent-pools", { body: { name: name.trim(), pool_type: poolType } }),
      );
      setName("");
      onCreated(pool);
    });
  };

  const details: ErrorDetail[] = error instanceof ApiError ? error.details : [];
  const forName = details.filter((d) => d.field === "name");
  const forType = details.filter((d) => d.field === "pool_type");
  const rest = details.filter((d) => d.field !== "name" && d.field !== "pool_type");
  return (
    <form className="card inline-form" onSubmit={submit} aria-labelledby="create-pool-title">
      <h2 id="create-pool-title">Create a pool</h2>
      <Field label="Pool name" issues={forName} help="lowercase letters, digits and '-'">
        {(props) => (
          <input {...props} value={name} onChange={(e) => setName(e.target.value)} required />
        )}
      </Field>
      <Field label="Pool type" issues={forType}>
        {(props) => (
          <select
            {...props}
            value={poolType}
            onChange={(e) => setPoolType(e.target.value as PoolType)}
          >
            {POOL_TYPES.map((t) => (
              <option key={t.value} value={t.value}>
                {t.label}
              </option>
            ))}
          </select>
        )}
      </Field>
      <div className="actions">
        <button type="submit" disabled={busy || !name.trim()}>
          Create pool
        </button>
      </div>
      <ErrorBox error={error} details={rest} />
    </form>
  );
}

export function PoolsList() {
  const pools = usePolled(
    () => must(api.GET("/api/v1/agent-pools", { params: { query: { limit: 1000 } } })),
    "pools",
    3000,
  );
  return (
    <section>
      <h1>Pools</h1>
      <ErrorBox error={pools.error} />
      {pools.data === undefined ? (
        <Loading what="pools" />
      ) : pools.data.items.length === 0 ? (
        <p>No pools yet: create one below.</p>
      ) : (
        <table className="data">
          <caption className="visually-hidden">Pools</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Type</th>
              <th scope="col">Pods ready / total</th>
              <th scope="col">Slots busy / total</th>
              <th scope="col">Queued tasks</th>
              <th scope="col">Freeze</th>
            </tr>
          </thead>
          <tbody>
            {pools.data.items.map((pool) => (
              <PoolRow key={pool.pool_id} pool={pool} />
            ))}
          </tbody>
        </table>
      )}
      {pools.data && pools.data.total > pools.data.items.length && (
        <p className="muted">
          Showing {pools.data.items.length} of {pools.data.total} pools.
        </p>
      )}
      <CreatePool onCreated={(pool) => navigate(`/pools/${pool.pool_id}/config`)} />
    </section>
  );
}
