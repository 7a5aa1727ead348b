import { useId, type ReactNode } from "react";
import { ApiError, message, type ErrorDetail } from "../api/client";

/** A labelled input with the server's message for this field next to it. */
export function Field({
  label,
  issues,
  help,
  children,
}: {
  label: string;
  issues?: ErrorDetail[];
  help?: ReactNode;
  children: (props: {
    id: string;
    "aria-invalid": boolean;
    "aria-describedby": string | undefined;
  }) => ReactNode;
}) {
  const id = useId();
  const errorId = `${id}-error`;
  const helpId = `${id}-help`;
  const invalid = !!issues && issues.length > 0;
  const described = [invalid ? errorId : null, help ? helpId : null].filter(Boolean).join(" ");
  return (
    <div className={invalid ? "field invalid" : "field"}>
      <label htmlFor={id}>{label}</label>
      {children({
        id,
        "aria-invalid": invalid,
        "aria-describedby": described || undefined,
      })}
      {help && (
        <small id={helpId} className="help">
          {help}
        </small>
      )}
      {invalid && (
        <ul id={errorId} className="field-error" role="alert">
          {issues.map((issue, i) => (
            <li key={i}>
              {issue.message}
              {issue.hint ? <span className="hint"> {issue.hint}</span> : null}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

/** A failed request: the message, and the details no field claimed. */
export function ErrorBox({ error, details }: { error: unknown; details?: ErrorDetail[] }) {
  if (!error) return null;
  const rest = details ?? (error instanceof ApiError ? error.details : []);
  return (
    <div className="error-box" role="alert">
      <strong>{message(error)}</strong>
      {rest.length > 0 && (
        <ul>
          {rest.map((d, i) => (
            <li key={i}>
              {d.field ? <code>{d.field}</code> : null} {d.message}
              {d.hint ? <span className="hint"> {d.hint}</span> : null}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

export function Badge({ kind, children }: { kind: string; children: ReactNode }) {
  return <span className={`badge badge-${kind}`}>{children}</span>;
}

export function Loading({ what }: { what: string }) {
  return <p className="muted">Loading {what}…</p>;
}
