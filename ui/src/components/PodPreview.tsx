// The Pod preview beside the configuration form: the exact Pod the server builds from the
// candidate configuration, and its diff against the Pod of the saved one.
import { structuredPatch } from "diff";
import { useEffect, useMemo, useState } from "react";
import { api, ApiError, must, type PoolConfig } from "../api/client";
import { useAction, useDebounced, usePolled } from "../hooks";
import { ErrorBox, Loading } from "./common";

type PreviewState = { yaml?: string; error?: unknown; loading: boolean };

/** The Pod the saved (`null`) or a candidate configuration makes, as YAML; with `dryRun`, as the
 * cluster admitted it in a server-side dry run (a refusal is an ApiError in its words). */
export async function previewText(
  poolId: string,
  candidate: PoolConfig | null,
  { dryRun = false }: { dryRun?: boolean } = {},
): Promise<string> {
  const path = { pool_id: poolId };
  const query = { format: "yaml" as const, dry_run: dryRun };
  const answer =
    candidate === null
      ? api.GET("/api/v1/agent-pools/{pool_id}/pod-preview", {
          params: { path, query },
          parseAs: "text",
        })
      : api.POST("/api/v1/agent-pools/{pool_id}/pod-preview", {
          params: { path, query },
          body: candidate,
          parseAs: "text",
        });
  const { data, error, response } = await answer;
  if (!response.ok) {
    let body: unknown = error;
    try {
      body = typeof error === "string" ? JSON.parse(error) : error;
    } catch {
      /* not JSON: keep the text */
    }
    throw new ApiError(response.status, body);
  }
  return data as unknown as string;
}

type Hunks = ReturnType<typeof structuredPatch>["hunks"];

function Patch({ hunks, label }: { hunks: Hunks; label: string }) {
  return (
    <pre className="code diff" aria-label={label} tabIndex={0} data-testid="pod-diff">
      {hunks.map((hunk, h) => (
        <span key={h}>
          <span className="diff-hunk">{`@@ -${hunk.oldStart},${hunk.oldLines} +${hunk.newStart},${hunk.newLines} @@\n`}</span>
          {hunk.lines.map((line, i) => (
            <span
              key={i}
              className={line[0] === "+" ? "diff-add" : line[0] === "-" ? "diff-del" : undefined}
            >
              {line}
              {"\n"}
            </span>
          ))}
        </span>
      ))}
    </pre>
  );
}

function Diff({ saved, candidate }: { saved: string | undefined; candidate: string | undefined }) {
  const patch = useMemo(
    () =>
      saved !== undefined && candidate !== undefined
        ? structuredPatch("saved", "form", saved, candidate, undefined, undefined, { context: 2 })
        : undefined,
    [saved, candidate],
  );
  if (saved === undefined) {
    return <p className="muted">The saved Pod could not be built, so there is nothing to compare.</p>;
  }
  if (!patch || candidate === undefined) return <p className="muted">Waiting for the preview…</p>;
  if (patch.hunks.length === 0) {
    return (
      <p className="muted" data-testid="diff-empty">
        No change: the form builds the same Pod as the saved configuration.
      </p>
    );
  }
  return <Patch hunks={patch.hunks} label="Changes against the saved Pod" />;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function isObject(value: Json | undefined): value is { [key: string]: Json } {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** `actual` cut to the fields `shape` has: what the cluster adds (defaults, uid, times) is left
 * out, so that the diff shows what slotpool sets. List items beyond `shape`'s are kept whole. */
export function projected(actual: Json, shape: Json | undefined): Json {
  if (isObject(actual) && isObject(shape)) {
    const out: { [key: string]: Json } = {};
    for (const key of Object.keys(shape)) {
      if (key in actual) out[key] = projected(actual[key]!, shape[key]);
    }
    return out;
  }
  if (Array.isArray(actual) && Array.isArray(shape)) {
    return actual.map((item, i) => (i < shape.length ? projected(item, shape[i]) : item));
  }
  return actual;
}

async function jsonOf(call: Promise<{ data?: unknown; error?: unknown; response: Response }>) {
  const { data, error, response } = await call;
  if (!response.ok) throw new ApiError(response.status, error);
  return data as Json;
}

/** The form's Pod against one running Pod as the cluster holds it (its fields slotpool sets). */
function RunningPodDiff({
  poolId,
  podName,
  candidate,
}: {
  poolId: string;
  podName: string;
  candidate: PoolConfig;
}) {
  const [state, setState] = useState<{ text?: [string, string]; error?: unknown }>({});
  const key = JSON.stringify(candidate);
  useEffect(() => {
    let current = true;
    setState({});
    const path = { pool_id: poolId };
    Promise.all([
      jsonOf(
        api.GET("/api/v1/agent-pools/{pool_id}/pods/{name}/manifest", {
          params: { path: { ...path, name: podName }, query: { format: "json" } },
          parseAs: "json",
        }),
      ),
      jsonOf(
        api.POST("/api/v1/agent-pools/{pool_id}/pod-preview", {
          params: { path, query: { format: "json" } },
          body: candidate,
          parseAs: "json",
        }),
      ),
    ]).then(
      ([actual, built]) =>
        current &&
        setState({
          text: [JSON.stringify(projected(actual, built), null, 2), JSON.stringify(built, null, 2)],
        }),
      (error: unknown) => current && setState({ error }),
    );
    return () => {
      current = false;
    };
  }, [poolId, podName, key]);
  const patch = useMemo(
    () =>
      state.text
        ? structuredPatch(podName, "form", state.text[0], state.text[1], undefined, undefined, {
            context: 2,
          })
        : undefined,
    [state.text, podName],
  );
  if (state.error) return <ErrorBox error={state.error} />;
  if (!patch) return <Loading what={`${podName} from the cluster`} />;
  if (patch.hunks.length === 0) {
    return (
      <p className="muted" data-testid="diff-empty">
        No change: {podName} runs what the form builds.
      </p>
    );
  }
  return <Patch hunks={patch.hunks} label={`Changes against ${podName}`} />;
}

/** What the form is compared with: the saved configuration's Pod, or one of the running Pods. */
function Comparison({
  poolId,
  candidate,
  candidateYaml,
  savedYaml,
}: {
  poolId: string;
  candidate: PoolConfig;
  candidateYaml: string | undefined;
  savedYaml: string | undefined;
}) {
  const [against, setAgainst] = useState("");
  const pods = usePolled(
    () =>
      must(api.GET("/api/v1/agent-pools/{pool_id}/pods", { params: { path: { pool_id: poolId } } })),
    poolId,
    10_000,
  );
  const running = (pods.data?.items ?? []).filter((p) => p.state !== "deleted");
  return (
    <>
      <h3>
        <label htmlFor="compare-with">Changes against</label>{" "}
        <select id="compare-with" value={against} onChange={(e) => setAgainst(e.target.value)}>
          <option value="">the saved configuration's Pod</option>
          {running.map((pod) => (
            <option key={pod.name} value={pod.name}>
              {pod.name} ({pod.outdated ? "outdated" : "current"}, as running)
            </option>
          ))}
        </select>
      </h3>
      {against ? (
        <>
          <p className="muted small">
            The Pod as the cluster holds it, cut to the fields slotpool sets (the cluster&apos;s
            defaults, ids and status left out).
          </p>
          <RunningPodDiff poolId={poolId} podName={against} candidate={candidate} />
        </>
      ) : (
        <Diff saved={savedYaml} candidate={candidateYaml} />
      )}
    </>
  );
}

export function PreviewPane({
  poolId,
  candidate,
  savedYaml,
}: {
  poolId: string;
  candidate: PoolConfig;
  savedYaml: string | undefined;
}) {
  const settled = useDebounced(candidate, 350);
  const key = JSON.stringify(settled);
  const [state, setState] = useState<PreviewState>({ loading: true });
  useEffect(() => {
    let current = true;
    setState((s) => ({ ...s, loading: true }));
    previewText(poolId, settled).then(
      (yaml) => current && setState({ yaml, loading: false }),
      (error: unknown) => current && setState((s) => ({ yaml: s.yaml, error, loading: false })),
    );
    return () => {
      current = false;
    };
  }, [poolId, key]);

  return (
    <div className="preview">
      <h3 id="preview-title">
        Pod preview <span className="muted small">{state.loading ? "updating…" : ""}</span>
      </h3>
      <p className="muted small">
        The exact Pod the server builds from this form (nothing is saved).
      </p>
      {state.error ? (
        <ErrorBox error={state.error} />
      ) : null}
      {state.yaml !== undefined ? (
        <pre
          className={state.error ? "code stale" : "code"}
          aria-labelledby="preview-title"
          data-testid="pod-preview"
          tabIndex={0}
        >
          {state.yaml}
        </pre>
      ) : (
        !state.error && <Loading what="the preview" />
      )}
      <Comparison
        poolId={poolId}
        candidate={settled}
        candidateYaml={state.error ? undefined : state.yaml}
        savedYaml={savedYaml}
      />
    </div>
  );
}

/** "Dry run": sends the form's Pod to the cluster as a server-side dry run (nothing is created or
 * saved) and shows the API server's verdict; a verdict is dropped as soon as the form changes. */
export function DryRun({ poolId, candidate }: { poolId: string; candidate: PoolConfig }) {
  const running = useAction();
  const [admitted, setAdmitted] = useState<string | null>(null);
  const key = JSON.stringify(candidate);
  const [checked, setChecked] = useState<string | null>(null);
  const clear = running.clear;
  useEffect(() => {
    if (checked !== null && checked !== key) {
      setChecked(null);
      setAdmitted(null);
      clear();
    }
  }, [key, checked, clear]);
  const run = () =>
    void running.run(async () => {
      setAdmitted(null);
      setChecked(key);
      await previewText(poolId, candidate, { dryRun: true });
      setAdmitted("The cluster would accept this Pod (server-side dry run; nothing was created).");
    });
  return (
    <div className="dry-run" aria-label="Dry run result" role="region">
      <button type="button" className="secondary" onClick={run} disabled={running.busy}>
        {running.busy ? "Asking the cluster…" : "Dry run"}
      </button>
      {admitted && (
        <p role="status" className="ok">
          {admitted}
        </p>
      )}
      <ErrorBox error={running.error} />
    </div>
  );
}
