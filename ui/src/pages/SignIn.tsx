import { useState, type FormEvent } from "react";
import { message, signIn } from "../api/client";
import { useAction } from "../hooks";

/** `token`, once the API has accepted it; a wrong token stays on this page with the reason. */
async function accepted(token: string): Promise<string> {
  let response: Response;
  try {
    response = await fetch("/api/v1/agent-pools?limit=1", {
      headers: { Authorization: `Bearer ${token}` },
    });
  } catch {
    throw new Error("The server cannot be reached.");
  }
  if (response.status === 401) throw new Error("The server refused this token.");
  if (!response.ok) throw new Error(`The server answered HTTP ${response.status}.`);
  return token;
}

export function SignIn() {
  const [token, setToken] = useState("");
  const { busy, error, run } = useAction();

  const submit = (event: FormEvent) => {
    event.preventDefault();
    void run(async () => signIn(await accepted(token.trim())));
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
        {error ? (
          <p className="field-error" role="alert">
            {message(error)}
          </p>
        ) : null}
        <button type="submit" disabled={busy || !token.trim()}>
          Sign in
        </button>
      </form>
    </main>
  );
}
