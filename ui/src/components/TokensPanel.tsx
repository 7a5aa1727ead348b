import { useRef, useState, type FormEvent } from "react";
import {
  api,
  ApiError,
  must,
  type Pool,
  type TokenCreated,
  type TokenRotated,
} from "../api/client";
import { age, fromNow, localInputToIso, when } from "../format";
import { useAction, usePolled } from "../hooks";
import { Badge, ErrorBox, Field, Loading } from "./common";

function ShownOnce({
  title,
  value,
  note,
  onClose,
}: {
  title: string;
  value: string;
  note?: string;
  onClose: () => void;
}) {
  const [copied, setCopied] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(value);
      setCopied(true);
    } catch {
      input.current?.select(); // no clipboard access (plain http): select it for Ctrl+C
    }
  };
  return (
    <div className="state-box" role="status">
      <h3>{title}</h3>
      {note && <p>{note}</p>}
      <p>This is the only time its value is shown. Copy it now.</p>
      <div className="row">
        <label htmlFor="new-token-value" className="visually-hidden">
          New token value
        </label>
        <input
          id="new-token-value"
          ref={input}
          className="mono wide"
          readOnly
          value={value}
          onFocus={(e) => e.target.select()}
        />
        <button type="button" onClick={copy}>
          {copied ? "Copied" : "Copy"}
        </button>
        <button type="button" className="secondary" onClick={onClose}>
          Done
        </button>
      </div>
    </div>
  );
}

function Rotated({ rotated, onClose }: { rotated: TokenRotated; onClose: () => void }) {
  const title = `Token “${rotated.new.name}” replaces “${rotated.old.name}”`;
  if (rotated.token !== null) {
    return <ShownOnce title={title} value={rotated.token} note={rotated.message} onClose={onClose} />;
  }
  const rebuild = rotated.rebuild;
  const parts = rebuild
    ? [
        rebuild.rebuilt.length && `${rebuild.rebuilt.length} Pod(s) rebuilt`,
        rebuild.created.length && `${rebuild.created.length} created`,
        rebuild.kept_busy.length && `${rebuild.kept_busy.length} busy, rebuilt once idle`,
      ].filter(Boolean)
    : [];
  return (
    <div className="state-box" role="status">
      <h3>{title}</h3>
      <p>{rotated.message}.</p>
      {parts.length > 0 && <p>{parts.join(", ")}.</p>}
      <p className="muted small">
        The new value is only in the Pod Secret; the old token is revoked once no Pod runs with
        it, at the latest when it expires ({when(rotated.old.expires_at)}).
      </p>
      <button type="button" className="secondary" onClick={onClose}>
        Done
      </button>
    </div>
  );
}

function RotateForm({
  pool,
  name,
  onDone,
  onCancel,
}: {
  pool: Pool;
  name: string;
  onDone: (rotated: TokenRotated) => void;
  onCancel: () => void;
}) {
  const [overlap, setOverlap] = useState("3600");
  const rotating = useAction();
  const inSecret = pool.agent_token === name;
  const seconds = Number(overlap);

  const submit = (event: FormEvent) => {
    event.preventDefault();
    void rotating.run(async () => {
      const rotated = await must(
        api.POST("/api/v1/agent-pools/{pool_id}/tokens/{name}/rotate", {
          params: { path: { pool_id: pool.pool_id, name } },
          body: { overlap_seconds: seconds },
        }),
      );
      onDone(rotated);
    });
  };

  const { busy, error } = rotating;
  const details = error instanceof ApiError ? error.details : [];
  const valid = overlap.trim() !== "" && Number.isInteger(seconds) && seconds >= 0;
  return (
    <form className="state-box" onSubmit={submit} aria-labelledby="rotate-token-title">
      <h3 id="rotate-token-title">Rotate token “{name}”</h3>
      <p className="small">
        {inSecret
          ? "This token is in the Pod Secret: slotpool puts a new one in the Secret and rebuilds " +
            "the Pods to use it (idle ones now, busy ones once idle). Its value is never shown."
          : "A new token replaces it; its value is shown once. The old one keeps working for the " +
            "overlap, so agents can switch."}
      </p>
      <div className="row">
        <Field
          label="Overlap (seconds)"
          issues={details.filter((d) => d.field === "overlap_seconds")}
          help={
            valid
              ? `The old token stays valid ${seconds ? `for ${age(new Date(Date.now() - seconds * 1000).toISOString())}` : "no longer"}${inSecret ? " at most" : ""}.`
              : "0 to 604800 (7 days)."
          }
        >
          {(props) => (
            <input
              {...props}
              type="number"
              min={0}
              max={604800}
              step={1}
              value={overlap}
              onChange={(e) => setOverlap(e.target.value)}
              required
            />
          )}
        </Field>
        <button type="submit" disabled={busy || !valid}>
          Rotate now
        </button>
        {busy && inSecret && (
          <span className="muted small" role="status">
            Rotating: the idle Pods are rebuilt first, this can take a little while…
          </span>
        )}
        <button type="button" className="secondary" onClick={onCancel}>
          Cancel
        </button>
      </div>
      <ErrorBox error={error} details={details.filter((d) => d.field !== "overlap_seconds")} />
    </form>
  );
}

export function TokensPanel({ pool, onChange }: { pool: Pool; onChange?: () => void }) {
  const path = { pool_id: pool.pool_id };
  const tokens = usePolled(
    () => must(api.GET("/api/v1/agent-pools/{pool_id}/tokens", { params: { path } })),
    pool.pool_id,
    10000,
  );
  const [name, setName] = useState("");
  const [expires, setExpires] = useState("");
  const [created, setCreated] = useState<TokenCreated | null>(null);
  const [rotating, setRotating] = useState<string | null>(null);
  const [rotated, setRotated] = useState<TokenRotated | null>(null);
  // Creating and revoking share one message box, as they always have.
  const action = useAction();

  const create = (event: FormEvent) => {
    event.preventDefault();
    void action.run(async () => {
      const iso = localInputToIso(expires);
      const token = await must(
        api.POST("/api/v1/agent-pools/{pool_id}/tokens", {
          params: { path },
          body: iso ? { name: name.trim(), expires_at: iso } : { name: name.trim() },
        }),
      );
      setCreated(token);
      setRotated(null);
      setName("");
      setExpires("");
      await tokens.reload();
    });
  };
  const revoke = (tokenName: string) => {
    if (!window.confirm(`Revoke token ${tokenName}? Agents using it stop working.`)) return;
    void action.run(async () => {
      await must(
        api.DELETE("/api/v1/agent-pools/{pool_id}/tokens/{name}", {
          params: { path: { ...path, name: tokenName } },
        }),
      );
      await tokens.reload();
    });
  };

  const rotatedNow = async (result: TokenRotated) => {
    setRotating(null);
    setRotated(result);
    setCreated(null);
    await tokens.reload();
    onChange?.(); // the pool's agent_token changes when the Secret's token was rotated
  };

  const { busy, error } = action;
  const details = error instanceof ApiError ? error.details : [];
  return (
    <div className="two-col">
      <div>
        <h2>Agent tokens</h2>
        <p className="muted small">
          Agents of this pool authenticate with one of these. Values are stored hashed.
          {pool.pool_type !== "static" && " slotpool creates the token its own Pods use."}
          {pool.agent_token &&
            ` The Pod Secret holds ${pool.agent_token}${pool.token_generation ? ` (rotated ${pool.token_generation}×)` : ""}.`}
        </p>
        {created && (
          <ShownOnce
            title={`Token “${created.name}” created`}
            value={created.token}
            onClose={() => setCreated(null)}
          />
        )}
        {rotated && <Rotated rotated={rotated} onClose={() => setRotated(null)} />}
        {rotating && (
          <RotateForm
            key={rotating}
            pool={pool}
            name={rotating}
            onDone={rotatedNow}
            onCancel={() => setRotating(null)}
          />
        )}
        <ErrorBox error={tokens.error} />
        {tokens.data === undefined ? (
          <Loading what="tokens" />
        ) : tokens.data.items.length === 0 ? (
          <p className="muted">No token.</p>
        ) : (
          <table className="data">
            <caption className="visually-hidden">Tokens</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Status</th>
                <th scope="col">Created</th>
                <th scope="col">Expires</th>
                <th scope="col">Last used</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {tokens.data.items.map((t) => (
                <tr key={t.id}>
                  <th scope="row">
                    {t.name}
                    {t.name === pool.agent_token && (
                      <div>
                        <Badge kind="secret">in the Pod Secret</Badge>
                      </div>
                    )}
                  </th>
                  <td>
                    <Badge kind={t.status}>{t.status}</Badge>
                  </td>
                  <td>{when(t.created_at)}</td>
                  <td>
                    {when(t.expires_at)}
                    {t.status === "active" && t.expires_at && (
                      <div className="muted small">{fromNow(t.expires_at)}</div>
                    )}
                  </td>
                  <td>{when(t.last_used_at)}</td>
                  <td className="nowrap">
                    {t.status === "active" && (
                      <button
                        type="button"
                        className="secondary small"
                        onClick={() => {
                          setRotating(t.name);
                          setRotated(null);
                        }}
                        aria-label={`Rotate token ${t.name}`}
                      >
                        Rotate
                      </button>
                    )}{" "}
                    {t.status === "active" && (
                      <button
                        type="button"
                        className="danger small"
                        onClick={() => revoke(t.name)}
                        aria-label={`Revoke token ${t.name}`}
                      >
                        Revoke
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </div>
      <form className="card" onSubmit={create} aria-labelledby="create-token-title">
        <h3 id="create-token-title">Create a token</h3>
        <Field label="Token name" issues={details.filter((d) => d.field === "name")}>
          {(props) => (
            <input {...props} value={name} onChange={(e) => setName(e.target.value)} required />
          )}
        </Field>
        <Field
          label="Expires (optional)"
          issues={details.filter((d) => d.field === "expires_at")}
          help="Empty: never expires."
        >
          {(props) => (
            <input
              {...props}
              type="datetime-local"
              value={expires}
              onChange={(e) => setExpires(e.target.value)}
            />
          )}
        </Field>
        <ErrorBox
          error={error}
          details={details.filter((d) => d.field !== "name" && d.field !== "expires_at")}
        />
        <div className="actions">
          <button type="submit" disabled={busy || !name.trim()}>
            Create token
          </button>
        </div>
      </form>
    </div>
  );
}
