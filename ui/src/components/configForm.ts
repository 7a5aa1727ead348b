// The configuration form's model, apart from its components: the form's fields as typed, how
// they are read from the stored configuration, how the candidate configuration is built (the
// stored one with the form laid over it), and which input a server message about a field
// belongs to.
import type { ErrorDetail, PoolConfig, Schemas } from "../api/client";

type PullPolicy = Schemas["PullPolicy"];
export type Stored = Record<string, unknown>;

/** What the form edits, as the user typed it. */
export type Form = {
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

// Shown and edited on the Freeze windows tab. Absent from a PUT, the pool keeps its windows, so
// the form leaves them out rather than send back the ones it read when it opened.
const EDITED_ELSEWHERE = ["freeze_schedules"] as const;

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

export function formOf(stored: Stored | null): Form {
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

function trimmed(value: string): string | undefined {
  return value.trim() || undefined;
}

function envOf(value: string): Record<string, string> | undefined {
  const env: Record<string, string> = {};
  for (const line of value.split("\n")) {
    if (!line.trim()) continue;
    const at = line.indexOf("=");
    if (at < 0) env[line.trim()] = "";
    else env[line.slice(0, at).trim()] = line.slice(at + 1);
  }
  return Object.keys(env).length ? env : undefined;
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

/** The form's CPU and memory laid over the stored resources: other resource names
 * (nvidia.com/gpu) and anything else in the block stay. No block at all when nothing is left: an
 * empty one would change the Pod's config hash. */
function resourcesOf(form: Form, stored: Stored | null): PoolConfig["resources"] {
  const { requests: _, limits: __, ...other } = (stored?.resources ?? {}) as Stored;
  const requests = withQuantities(
    quantities(stored, "requests"),
    form.requests_cpu,
    form.requests_memory,
  );
  const limits = withQuantities(quantities(stored, "limits"), form.limits_cpu, form.limits_memory);
  if (Object.keys(requests).length || Object.keys(limits).length) {
    return { ...other, requests, limits };
  }
  return Object.keys(other).length ? other : undefined;
}

/** Every field the form shows, read from its inputs; undefined where an input is left empty. Typed
 * by the API contract, so a misplaced key (cpu_limit for resources.limits.cpu) fails `tsc`. */
function shownFields(form: Form, stored: Stored | null): PoolConfig {
  return {
    image: trimmed(form.image),
    image_pull_policy: form.image_pull_policy,
    command: listOf(form.command),
    args: listOf(form.args),
    env: envOf(form.env),
    resources: resourcesOf(form, stored),
    min_replicas: numberOf(form.min_replicas),
    max_replicas: numberOf(form.max_replicas),
    slots_per_pod: numberOf(form.slots_per_pod),
    namespace: trimmed(form.namespace),
    scale_down_delay_seconds: numberOf(form.scale_down_delay_seconds),
    min_idle_slots: numberOf(form.min_idle_slots),
    pending_timeout_seconds: numberOf(form.pending_timeout_seconds),
  };
}

/** The candidate configuration: the stored one, whole, as the API returned it, with the form's
 * fields laid over it. A field the form does not show (service_account, tolerations, or one the
 * model gains later) goes back exactly as it was read; an input left empty removes its field, so
 * the server's default applies. */
export function configOf(form: Form, stored: Stored | null): PoolConfig {
  const config: Stored = { ...stored, ...shownFields(form, stored) };
  for (const key of EDITED_ELSEWHERE) delete config[key];
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

export function splitIssues(details: ErrorDetail[]) {
  const byField: Partial<Record<keyof Form, ErrorDetail[]>> = {};
  const rest: ErrorDetail[] = [];
  for (const detail of details) {
    const key = owner(detail.field);
    if (key) (byField[key] ??= []).push(detail);
    else rest.push(detail);
  }
  return { byField, rest };
}
