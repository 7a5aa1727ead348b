// The Pod preview beside the configuration form: the exact Pod the server builds from the
// candidate configuration, and its diff against the Pod of the saved one.
import { structuredPatch } from "diff";
import { useEffect, useMemo, useState } from "react";
import { api, ApiError, type PoolConfig } from "../api/client";
import { useAction, useDebounced } from "../hooks";
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
  return (
    <pre className="code diff" aria-label="Changes against the saved Pod" tabIndex={0}>
      {patch.hunks.map((hunk, h) => (
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
      <h3>Changes against the running Pods (saved configuration)</h3>
      <Diff saved={savedYaml} candidate={state.error ? undefined : state.yaml} />
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
