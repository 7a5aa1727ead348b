import { useRef, useState, type FormEvent } from "react";
import { api, ApiError, must, type Pool, type TokenCreated } from "../api/client";
import { localInputToIso, when } from "../format";
import { usePolled } from "../hooks";
import { Badge, ErrorBox, Field, Loading } from "./common";

function ShownOnce({ token, onClose }: { token: TokenCreated; onClose: () => void }) {
  const [copied, setCopied] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(token.token);
      setCopied(true);
    } catch {
      input.current?.select(); // no clipboard access (plain http): select it for Ctrl+C
    }
  };
  return (
    <div className="state-box" role="status">
      <h3>Token “{token.name}” created</h3>
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
          value={token.token}
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

export function TokensPanel({ pool }: { pool: Pool }) {
  const path = { pool_id: pool.pool_id };
  const tokens = usePolled(
    () => must(api.GET("/api/v1/agent-pools/{pool_id}/tokens", { params: { path } })),
    pool.pool_id,
    10000,
  );
  const [name, setName] = useState("");
  const [expires, setExpires] = useState("");
  const [created, setCreated] = useState<TokenCreated | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const create = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const iso = localInputToIso(expires);
      const token = await must(
        api.POST("/api/v1/agent-pools/{pool_id}/tokens", {
          params: { path },
          body: iso ? { name: name.trim(), expires_at: iso } : { name: name.trim() },
        }),
      );
      setCreated(token);
      setName("");
      setExpires("");
      await tokens.reload();
    } catch (caught) {
      setError(caught);
    } finally {
      setBusy(false);
    }
  };
  const revoke = async (tokenName: string) => {
    if (!window.confirm(`Revoke token ${tokenName}? Agents using it stop working.`)) return;
    setError(null);
    try {
      await must(
        api.DELETE("/api/v1/agent-pools/{pool_id}/tokens/{name}", {
          params: { path: { ...path, name: tokenName } },
        }),
      );
      await tokens.reload();
    } catch (caught) {
      setError(caught);
    }
  };

  const details = error instanceof ApiError ? error.details : [];
  return (
    <div className="two-col">
      <div>
        <h2>Agent tokens</h2>
        <p className="muted small">
          Agents of this pool authenticate with one of these. Values are stored hashed.
          {pool.pool_type !== "static" && " slotpool creates the token its own Pods use."}
        </p>
        {created && <ShownOnce token={created} onClose={() => setCreated(null)} />}
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
                  <th scope="row">{t.name}</th>
                  <td>
                    <Badge kind={t.status}>{t.status}</Badge>
                  </td>
                  <td>{when(t.created_at)}</td>
                  <td>{when(t.expires_at)}</td>
                  <td>{when(t.last_used_at)}</td>
                  <td>
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
