import { structuredPatch } from "diff";
import { useEffect, useMemo, useState, type FormEvent } from "react";
import {
  api,
  ApiError,
  must,
  type ErrorDetail,
  type Pool,
  type PoolConfig,
  type Schemas,
} from "../api/client";
import { useDebounced } from "../hooks";
import { ErrorBox, Field, Loading } from "./common";

type PullPolicy = Schemas["PullPolicy"];
type Stored = Record<string, unknown>;

/** What the form edits, as the user typed it. */
type Form = {
  image: string;
  image_pull_policy: PullPolicy;
  command: string;
  args: string;
  env: string;
  requests_cpu: string;
  requests_memory: string;
  limits_cpu: string;
  limits_memory: string;
  min_replicas: string;
  max_replicas: string;
  slots_per_pod: string;
  namespace: string;
  scale_down_delay_seconds: string;
  min_idle_slots: string;
  pending_timeout_seconds: string;
};

// Saved keys the form does not show; sent back as they are so a save never drops them.
// freeze_schedules is left out on purpose: absent from a PUT, the pool keeps its windows.
const KEPT = [
  "service_account",
  "node_selector",
  "tolerations",
  "labels",
  "annotations",
  "reservation_ttl_seconds",
] as const;

function text(value: unknown): string {
  return value === undefined || value === null ? "" : String(value);
}

function lines(value: unknown): string {
  return Array.isArray(value) ? value.map(String).join("\n") : "";
}

function quantities(stored: Stored | null, kind: "requests" | "limits"): Record<string, string> {
  const resources = stored?.resources as { [k: string]: Record<string, string> } | undefined;
  return { ...(resources?.[kind] ?? {}) };
}

function formOf(stored: Stored | null): Form {
  const s = stored ?? {};
  const env = (s.env ?? {}) as Record<string, string>;
  return {
    image: text(s.image),
    image_pull_policy: (s.image_pull_policy as PullPolicy | undefined) ?? "IfNotPresent",
    command: lines(s.command),
    args: lines(s.args),
    env: Object.entries(env)
      .map(([k, v]) => `${k}=${v}`)
      .join("\n"),
    requests_cpu: text(quantities(stored, "requests").cpu),
    requests_memory: text(quantities(stored, "requests").memory),
    limits_cpu: text(quantities(stored, "limits").cpu),
    limits_memory: text(quantities(stored, "limits").memory),
    min_replicas: text(s.min_replicas ?? 1),
    max_replicas: text(s.max_replicas ?? 10),
    slots_per_pod: text(s.slots_per_pod ?? 4),
    namespace: text(s.namespace),
    scale_down_delay_seconds: text(s.scale_down_delay_seconds ?? 60),
    min_idle_slots: text(s.min_idle_slots ?? 0),
    pending_timeout_seconds: text(s.pending_timeout_seconds ?? 300),
  };
}

function listOf(value: string): string[] | undefined {
  const items = value
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean);
  return items.length ? items : undefined;
}

function numberOf(value: string): number | undefined {
  return value.trim() === "" ? undefined : Number(value);
}

function withQuantities(
  base: Record<string, string>,
  cpu: string,
  memory: string,
): Record<string, string> {
  const out = { ...base };
  for (const [name, value] of [
    ["cpu", cpu],
    ["memory", memory],
  ] as const) {
    if (value.trim()) out[name] = value.trim();
    else delete out[name];
  }
  return out;
}

/** The candidate configuration, typed by the API contract (resources.limits.cpu, not cpu_limit). */
function configOf(form: Form, stored: Stored | null): PoolConfig {
  const config: PoolConfig = { image_pull_policy: form.image_pull_policy };
  for (const key of KEPT) {
    if (stored && stored[key] !== undefined) {
      (config as Record<string, unknown>)[key] = stored[key];
    }
  }
  if (form.image.trim()) config.image = form.image.trim();
  const command = listOf(form.command);
  if (command) config.command = command;
  const args = listOf(form.args);
  if (args) config.args = args;
  const env: Record<string, string> = {};
  for (const line of form.env.split("\n")) {
    if (!line.trim()) continue;
    const at = line.indexOf("=");
    if (at < 0) env[line.trim()] = "";
    else env[line.slice(0, at).trim()] = line.slice(at + 1);
  }
  if (Object.keys(env).length) config.env = env;
  const requests = withQuantities(
    quantities(stored, "requests"),
    form.requests_cpu,
    form.requests_memory,
  );
  const limits = withQuantities(quantities(stored, "limits"), form.limits_cpu, form.limits_memory);
  if (Object.keys(requests).length || Object.keys(limits).length) {
    config.resources = { requests, limits };
  }
  config.min_replicas = numberOf(form.min_replicas);
  config.max_replicas = numberOf(form.max_replicas);
  config.slots_per_pod = numberOf(form.slots_per_pod);
  if (form.namespace.trim()) config.namespace = form.namespace.trim();
  config.scale_down_delay_seconds = numberOf(form.scale_down_delay_seconds);
  config.min_idle_slots = numberOf(form.min_idle_slots);
  config.pending_timeout_seconds = numberOf(form.pending_timeout_seconds);
  return JSON.parse(JSON.stringify(config)) as PoolConfig; // drops the undefined keys
}

// The API's field path of each input; an issue goes to the longest path it starts with.
const FIELD_PATHS: Record<keyof Form, string> = {
  image: "image",
  image_pull_policy: "image_pull_policy",
  command: "command",
  args: "args",
  env: "env",
  requests_cpu: "resources.requests.cpu",
  requests_memory: "resources.requests.memory",
  limits_cpu: "resources.limits.cpu",
  limits_memory: "resources.limits.memory",
  min_replicas: "min_replicas",
  max_replicas: "max_replicas",
  slots_per_pod: "slots_per_pod",
  namespace: "namespace",
  scale_down_delay_seconds: "scale_down_delay_seconds",
  min_idle_slots: "min_idle_slots",
  pending_timeout_seconds: "pending_timeout_seconds",
};

function owner(field: string): keyof Form | undefined {
  let best: keyof Form | undefined;
  for (const [key, path] of Object.entries(FIELD_PATHS) as [keyof Form, string][]) {
    const hit =
      field === path || field.startsWith(`${path}.`) || field.startsWith(`${path}[`);
    if (hit && (!best || path.length > FIELD_PATHS[best].length)) best = key;
  }
  return best;
}

function splitIssues(details: ErrorDetail[]) {
  const byField: Partial<Record<keyof Form, ErrorDetail[]>> = {};
  const rest: ErrorDetail[] = [];
  for (const detail of details) {
    const key = owner(detail.field);
    if (key) (byField[key] ??= []).push(detail);
    else rest.push(detail);
  }
  return { byField, rest };
}

type PreviewState = { yaml?: string; error?: unknown; loading: boolean };

async function previewText(poolId: string, candidate: PoolConfig | null): Promise<string> {
  const path = { pool_id: poolId };
  const answer =
    candidate === null
      ? api.GET("/api/v1/agent-pools/{pool_id}/pod-preview", {
          params: { path, query: { format: "yaml" } },
          parseAs: "text",
        })
      : api.POST("/api/v1/agent-pools/{pool_id}/pod-preview", {
          params: { path, query: { format: "yaml" } },
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

function PreviewPane({
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

export function ConfigPanel({ pool, onSaved }: { pool: Pool; onSaved: () => void }) {
  const poolId = pool.pool_id;
  const [stored, setStored] = useState<Stored | null>();
  const [revision, setRevision] = useState<number>();
  const [form, setForm] = useState<Form>();
  const [savedYaml, setSavedYaml] = useState<string>();
  const [loadError, setLoadError] = useState<unknown>(null);
  const [saveError, setSaveError] = useState<unknown>(null);
  const [saved, setSaved] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [edited, setEdited] = useState<Set<keyof Form>>(new Set());

  // What the running Pods are built from: the saved configuration (or the defaults, if none).
  const loadSavedPreview = async () => {
    try {
      setSavedYaml(await previewText(poolId, null));
    } catch {
      setSavedYaml(undefined);
    }
  };

  useEffect(() => {
    let current = true;
    (async () => {
      const { data, error, response } = await api.GET("/api/v1/agent-pools/{pool_id}/k8s-config", {
        params: { path: { pool_id: poolId } },
      });
      if (!current) return;
      if (!response.ok) return setLoadError(new ApiError(response.status, error));
      const config = (data ?? null) as Stored | null;
      setStored(config);
      setRevision(Number((response.headers.get("ETag") ?? "").replaceAll('"', "")) || undefined);
      setForm(formOf(config));
      await loadSavedPreview();
    })();
    return () => {
      current = false;
    };
  }, [poolId]);

  const candidate = useMemo(
    () => (form ? configOf(form, stored ?? null) : undefined),
    [form, stored],
  );

  if (loadError) return <ErrorBox error={loadError} />;
  if (!form || !candidate || stored === undefined) return <Loading what="the configuration" />;

  const set = (key: keyof Form) => (value: string) => {
    setForm({ ...form, [key]: value });
    setSaved(null);
    setEdited(new Set(edited).add(key));
  };
  const details = saveError instanceof ApiError ? saveError.details : [];
  const { byField: answered, rest } = splitIssues(details);
  // The server's message stays next to its field until that field is edited.
  const byField = Object.fromEntries(
    Object.entries(answered).filter(([key]) => !edited.has(key as keyof Form)),
  ) as typeof answered;

  const save = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setSaveError(null);
    setSaved(null);
    setEdited(new Set());
    try {
      const out = await must(
        api.PUT("/api/v1/agent-pools/{pool_id}/k8s-config", {
          params: {
            path: { pool_id: poolId },
            header: revision ? { "if-match": `"${revision}"` } : {},
          },
          body: candidate,
        }),
      );
      const config = (out.k8s_config ?? null) as Stored | null;
      setStored(config);
      setRevision(out.revision);
      setForm(formOf(config));
      const rebuild = out.rebuild;
      const detail = rebuild
        ? ` (${rebuild.created.length} Pods created, ${rebuild.rebuilt.length} rebuilt, ` +
          `${rebuild.kept_busy.length} busy kept)`
        : "";
      setSaved(`${out.message}${detail}.`);
      await loadSavedPreview();
      onSaved();
    } catch (caught) {
      setSaveError(caught);
    } finally {
      setBusy(false);
    }
  };

  const input = (key: keyof Form, label: string, extra: Record<string, string> = {}) => (
    <Field label={label} issues={byField[key]}>
      {(props) => (
        <input {...props} {...extra} value={form[key]} onChange={(e) => set(key)(e.target.value)} />
      )}
    </Field>
  );
  const area = (key: keyof Form, label: string, help: string) => (
    <Field label={label} issues={byField[key]} help={help}>
      {(props) => (
        <textarea
          {...props}
          rows={2}
          value={form[key]}
          onChange={(e) => set(key)(e.target.value)}
        />
      )}
    </Field>
  );
  const number = (key: keyof Form, label: string) =>
    input(key, label, { inputMode: "numeric" });

  return (
    <div className="config-layout">
      <form className="config-form" onSubmit={save} aria-label="Pod configuration" noValidate>
        <fieldset>
          <legend>Container</legend>
          {input("image", "Image", {
            placeholder: pool.pool_type === "k8s" ? "registry/agent:1.2" : "not used by local pools",
          })}
          <Field label="Image pull policy" issues={byField.image_pull_policy}>
            {(props) => (
              <select
                {...props}
                value={form.image_pull_policy}
                onChange={(e) => set("image_pull_policy")(e.target.value)}
              >
                <option value="IfNotPresent">IfNotPresent</option>
                <option value="Always">Always</option>
                <option value="Never">Never</option>
              </select>
            )}
          </Field>
          <div className="grid-2">
            {area("command", "Command", "One item per line.")}
            {area("args", "Arguments", "One item per line.")}
          </div>
          {area("env", "Environment", "NAME=value, one per line.")}
        </fieldset>
        <fieldset>
          <legend>Resources</legend>
          <div className="grid-2">
            {input("requests_cpu", "CPU request", { placeholder: "e.g. 250m" })}
            {input("limits_cpu", "CPU limit", { placeholder: "e.g. 1" })}
            {input("requests_memory", "Memory request", { placeholder: "e.g. 256Mi" })}
            {input("limits_memory", "Memory limit", { placeholder: "e.g. 1Gi" })}
          </div>
        </fieldset>
        <fieldset>
          <legend>Scaling</legend>
          <div className="grid-3">
            {number("min_replicas", "Min replicas")}
            {number("max_replicas", "Max replicas")}
            {number("slots_per_pod", "Slots per Pod")}
            {number("min_idle_slots", "Min idle slots")}
            {number("scale_down_delay_seconds", "Scale-down delay (s)")}
            {number("pending_timeout_seconds", "Pending timeout (s)")}
          </div>
          {input("namespace", "Namespace", { placeholder: "server default" })}
        </fieldset>
        <ErrorBox error={saveError} details={rest} />
        {saved && (
          <p role="status" className="ok">
            {saved}
          </p>
        )}
        <div className="actions sticky">
          <button type="submit" disabled={busy}>
            {busy ? "Saving…" : "Save configuration"}
          </button>
          <button
            type="button"
            className="secondary"
            onClick={() => {
              setForm(formOf(stored));
              setSaveError(null);
            }}
          >
            Reset form
          </button>
        </div>
      </form>
      <PreviewPane poolId={poolId} candidate={candidate} savedYaml={savedYaml} />
    </div>
  );
}
