import { useEffect, useMemo, useState, type FormEvent } from "react";
import { api, ApiError, must, type Pool, type Schemas } from "../api/client";
import { useAction } from "../hooks";
import { configOf, formOf, splitIssues, type Form, type Stored } from "./configForm";
import { ErrorBox, Field, Loading } from "./common";
import { DryRun, previewText, PreviewPane } from "./PodPreview";

function savedMessage(out: Schemas["ConfigSaved"]): string {
  const rebuild = out.rebuild;
  const detail = rebuild
    ? ` (${rebuild.created.length} Pods created, ${rebuild.rebuilt.length} rebuilt, ` +
      `${rebuild.kept_busy.length} busy kept)`
    : "";
  return `${out.message}${detail}.`;
}

export function ConfigPanel({ pool, onSaved }: { pool: Pool; onSaved: () => void }) {
  const poolId = pool.pool_id;
  const [stored, setStored] = useState<Stored | null>();
  const [revision, setRevision] = useState<number>();
  const [form, setForm] = useState<Form>();
  const [savedYaml, setSavedYaml] = useState<string>();
  const [loadError, setLoadError] = useState<unknown>(null);
  const saving = useAction();
  const [saved, setSaved] = useState<string | null>(null);
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
  const details = saving.error instanceof ApiError ? saving.error.details : [];
  const { byField: answered, rest } = splitIssues(details);
  // The server's message stays next to its field until that field is edited.
  const byField = Object.fromEntries(
    Object.entries(answered).filter(([key]) => !edited.has(key as keyof Form)),
  ) as typeof answered;

  const save = (event: FormEvent) => {
    event.preventDefault();
    setSaved(null);
    setEdited(new Set());
    void saving.run(async () => {
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
      setSaved(savedMessage(out));
      await loadSavedPreview();
      onSaved();
    });
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
        <ErrorBox error={saving.error} details={rest} />
        {saved && (
          <p role="status" className="ok">
            {saved}
          </p>
        )}
        <div className="actions sticky">
          <button type="submit" disabled={saving.busy}>
            {saving.busy ? "Saving…" : "Save configuration"}
          </button>
          <button
            type="button"
            className="secondary"
            onClick={() => {
              setForm(formOf(stored));
              saving.clear();
            }}
          >
            Reset form
          </button>
        </div>
        <DryRun poolId={poolId} candidate={candidate} />
      </form>
      <PreviewPane poolId={poolId} candidate={candidate} savedYaml={savedYaml} />
    </div>
  );
}
