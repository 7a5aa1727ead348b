// The replicas of this installation (GET /api/v1/cluster): which one leads, its term and lease,
// and every replica whose Pod settings disagree with the leader's (the leader's values are the
// ones Pods are built with, so a disagreeing replica is a configuration mistake to fix).
import { api, must, type Schemas } from "../api/client";
import { Badge, ErrorBox, Loading } from "../components/common";
import { age, fromNow, when } from "../format";
import { usePolled } from "../hooks";

type Cluster = Schemas["ClusterOut"];
type Replica = Schemas["ReplicaOut"];
type PodSettings = Record<string, string | null>;

const REFRESH_MS = 2000;

function loadCluster(): Promise<Cluster> {
  return must(api.GET("/api/v1/cluster"));
}

/** The environment variable behind a Pod setting, e.g. public_url: SLOTPOOL_PUBLIC_URL. */
function variable(setting: string): string {
  return `SLOTPOOL_${setting.toUpperCase()}`;
}

function shown(value: unknown): string {
  return value === null || value === undefined || value === "" ? "(unset)" : String(value);
}

/** Each setting where this replica's value differs from the leader's, with both values. */
function differences(
  replica: Replica,
  leader: Replica | undefined,
): { setting: string; own: string; leader: string }[] {
  const own: PodSettings | null = replica.pod_settings;
  const theirs: PodSettings | null | undefined = leader?.pod_settings;
  if (!own || !theirs) return [];
  const settings = new Set([...Object.keys(own), ...Object.keys(theirs)]);
  return [...settings]
    .filter((s) => (own[s] ?? null) !== (theirs[s] ?? null))
    .map((s) => ({ setting: s, own: shown(own[s]), leader: shown(theirs[s]) }));
}

function Disagreements({ replica, leader }: { replica: Replica; leader: Replica | undefined }) {
  const found = differences(replica, leader);
  return (
    <div className="reason" role="alert" data-testid="disagreement">
      <strong>Pod settings differ from the leader's.</strong> Pods are built with the leader's
      values; this replica's own are not used. Set the same values on every replica:
      <ul>
        {found.length > 0
          ? found.map((d) => (
              <li key={d.setting}>
                <code>{variable(d.setting)}</code>: <code>{d.own}</code> here,{" "}
                <code>{d.leader}</code> on the leader
              </li>
            ))
          : // The leader's own row is not at hand: the server's words for each difference.
            replica.disagreements.map((d) => <li key={d}>{d}</li>)}
      </ul>
    </div>
  );
}

function LeaderBox({ cluster, now }: { cluster: Cluster; now: number }) {
  const leader = cluster.leader;
  if (!leader) {
    return (
      <div className="state-box no-pods" data-testid="no-leader">
        <p>
          <strong>No replica leads right now.</strong> Every replica serves the API and the
          agents, but no controller runs (no Pod is created or deleted) until one takes the lease,
          within {cluster.lease_seconds}s of the last leader's end.
        </p>
      </div>
    );
  }
  const expires = leader.lease_expires_at;
  const expired = expires !== null && Date.parse(expires) <= now;
  return (
    <div className={expired ? "state-box no-pods" : "state-box"} data-testid="leader">
      <p>
        <strong>{leader.replica_id}</strong> <Badge kind="leader">leader</Badge> term{" "}
        <span data-testid="term">{leader.term}</span>
        {leader.since && (
          <>
            , since {when(leader.since)} ({age(leader.since, now)} ago)
          </>
        )}
        .
      </p>
      <p>
        {expires === null ? (
          <>No lease expiry recorded.</>
        ) : (
          <>
            Lease expires {when(expires)}{" "}
            {expired ? (
              <strong>(expired: another replica takes over)</strong>
            ) : (
              <span className="muted">({fromNow(expires, now)}; renewed while it leads)</span>
            )}
            .
          </>
        )}{" "}
        {leader.first_pass_at ? (
          <>First controller pass over all pools finished {when(leader.first_pass_at)}.</>
        ) : (
          <>
            Its controller has not finished a first pass over all pools yet (a server with
            neither a cluster nor local pools runs none).
          </>
        )}
      </p>
    </div>
  );
}

function ReplicaRow({
  replica,
  cluster,
  leader,
  now,
}: {
  replica: Replica;
  cluster: Cluster;
  leader: Replica | undefined;
  now: number;
}) {
  return (
    <>
      <tr data-testid="replica" data-replica={replica.replica_id}>
        <th scope="row">
          <code>{replica.replica_id}</code>{" "}
          {replica.leader && <Badge kind="leader">leader</Badge>}
          {replica.replica_id === cluster.self && <Badge kind="self">this page</Badge>}
        </th>
        <td>
          {replica.host} <span className="muted small">pid {replica.pid}</span>
        </td>
        <td>{replica.version}</td>
        <td title={replica.started_at}>{when(replica.started_at)}</td>
        <td title={replica.last_seen_at}>{age(replica.last_seen_at, now)} ago</td>
        <td>
          {replica.stopping ? (
            <Badge kind="draining">stopping</Badge>
          ) : (
            <span className="muted">no</span>
          )}
        </td>
        <td>
          {replica.agrees_with_leader ? (
            <span className="ok">agrees</span>
          ) : (
            <Badge kind="failed">disagrees</Badge>
          )}
        </td>
      </tr>
      {!replica.agrees_with_leader && (
        <tr>
          <td colSpan={7}>
            <Disagreements replica={replica} leader={leader} />
          </td>
        </tr>
      )}
    </>
  );
}

export function ClusterPage() {
  const cluster = usePolled(loadCluster, "cluster", REFRESH_MS);
  const data = cluster.data;
  const now = Date.now();
  const leader = data?.replicas.find((r) => r.leader);
  return (
    <section>
      <h1>Cluster</h1>
      <p className="muted">
        Every replica serves the API, the UI and the agents; the leader also runs the pool
        controller and the sweeper. Refreshes every {REFRESH_MS / 1000}s.
      </p>
      <ErrorBox error={cluster.error} />
      {!data ? (
        <Loading what="the cluster" />
      ) : (
        <>
          <LeaderBox cluster={data} now={now} />
          <p className="muted small">
            Database: <strong data-testid="database">{data.database}</strong>; lease{" "}
            {data.lease_seconds}s; this page was served by <code>{data.self}</code>.
          </p>
          <table className="data" aria-label="Replicas">
            <thead>
              <tr>
                <th scope="col">Replica</th>
                <th scope="col">Host</th>
                <th scope="col">Version</th>
                <th scope="col">Started</th>
                <th scope="col">Last seen</th>
                <th scope="col">Stopping</th>
                <th scope="col">Pod settings</th>
              </tr>
            </thead>
            <tbody>
              {data.replicas.map((replica) => (
                <ReplicaRow
                  key={replica.replica_id}
                  replica={replica}
                  cluster={data}
                  leader={leader}
                  now={now}
                />
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
