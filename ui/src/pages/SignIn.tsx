import { useState, type FormEvent } from "react";
import { signIn } from "../api/client";

export function SignIn() {
  const [token, setToken] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      // Checked against the API before it is kept: a wrong token stays on this page.
      const response = await fetch("/api/v1/agent-pools?limit=1", {
        headers: { Authorization: `Bearer ${token.trim()}` },
      });
      if (response.status === 401) setError("The server refused this token.");
      else if (!response.ok) setError(`The server answered HTTP ${response.status}.`);
      else signIn(token.trim());
    } catch {
      setError("The server cannot be reached.");
    } finally {
      setBusy(false);
    }
  };

  return (
    <main id="main" className="signin">
      <h1>slotpool</h1>
      <form onSubmit={submit} aria-labelledby="signin-title">
        <h2 id="signin-title">Sign in</h2>
        <p className="muted">
          Use the admin token: <code>scripts/up</code> prints it, and keeps it in the data directory
          (<code>admin-token</code>). It is kept in this browser tab only.
        </p>
        <div className="field">
          <label htmlFor="admin-token">Admin token</label>
          <input
            id="admin-token"
            type="password"
            autoComplete="current-password"
            value={token}
            onChange={(e) => setToken(e.target.value)}
            required
            autoFocus
          />
        </div>
        {error && (
          <p className="field-error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy || !token.trim()}>
          Sign in
        </button>
      </form>
    </main>
  );
}
