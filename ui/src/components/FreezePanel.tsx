import { useState, type FormEvent } from "react";
import {
  api,
  ApiError,
  must,
  type FreezeSchedule,
  type FreezeState,
  type Pool,
  type Schemas,
} from "../api/client";
import { localInputToIso, when } from "../format";
import { useAction, usePolled } from "../hooks";
import { Badge, ErrorBox, Field, Loading } from "./common";
import { DAYS, WeekView } from "./WeekView";

type Policy = Schemas["FreezePolicy"];
const BROWSER_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone;
const EMPTY: FreezeSchedule = {
  from_time: "22:00",
  to_time: "06:00",
  weekdays: [1, 2, 3, 4, 5],
  timezone: BROWSER_ZONE,
  policy: "scale_to_zero",
  note: "",
};

function ActiveState({ freeze, poolId, onChange }: {
  freeze: FreezeState;
  poolId: string;
  onChange: () => void;
}) {
  const [until, setUntil] = useState("");
  const action = useAction();
  const { busy, error } = action;
  const path = { pool_id: poolId };

  const run = (call: () => Promise<unknown>) =>
    action.run(async () => {
      await call();
      onChange();
    });
  const lift = () =>
    run(() => {
      const iso = localInputToIso(until);
      return must(
        api.POST("/api/v1/agent-pools/{pool_id}/one-time-unfreeze", {
          params: { path },
          body: iso ? { until: iso } : {},
        }),
      );
    });
  const restore = () =>
    run(() => must(api.DELETE("/api/v1/agent-pools/{pool_id}/one-time-unfreeze", { params: { path } })));

  return (
    <div className={freeze.active ? "state-box frozen" : "state-box"} aria-live="polite">
      <h3>
        {freeze.active ? (
          <>
            <Badge kind="frozen">frozen</Badge> until {when(freeze.until)}
          </>
        ) : freeze.lifted_until ? (
          <>
            <Badge kind="lifted">freeze lifted</Badge> until {when(freeze.lifted_until)}
          </>
        ) : (
          "No freeze window is active"
        )}
      </h3>
      {freeze.reason && <p>{freeze.reason}</p>}
      {freeze.active && freeze.policy && (
        <p className="muted">
          Policy: {freeze.policy === "scale_to_zero"
            ? "scale_to_zero (idle Pods are deleted, none created)"
            : "no_new_tasks (queued tasks wait too)"}
        </p>
      )}
      <div className="row">
        {!freeze.lifted_until && (
          <>
            <Field label="Lift until (optional)" help="Default: the end of the active window.">
              {(props) => (
                <input
                  {...props}
                  type="datetime-local"
                  value={until}
                  onChange={(e) => setUntil(e.target.value)}
                />
              )}
            </Field>
            <button type="button" onClick={lift} disabled={busy}>
              Lift freeze once
            </button>
          </>
        )}
        {freeze.lifted_until && (
          <button type="button" className="secondary" onClick={restore} disabled={busy}>
            Restore the freeze windows
          </button>
        )}
      </div>
      <ErrorBox error={error} />
    </div>
  );
}

function ScheduleForm({
  poolId,
  initial,
  onDone,
  onCancel,
}: {
  poolId: string;
  initial: FreezeSchedule;
  onDone: () => void;
  onCancel?: () => void;
}) {
  const [draft, setDraft] = useState<FreezeSchedule>(initial);
  const { busy, error, run } = useAction();
  const editing = !!initial.id;

  const submit = (event: FormEvent) => {
    event.preventDefault();
    void run(async () => {
      const body: FreezeSchedule = {
        from_time: draft.from_time,
        to_time: draft.to_time,
        weekdays: [...draft.weekdays].sort(),
        timezone: draft.timezone?.trim() || null,
        policy: draft.policy,
        note: draft.note ?? "",
      };
      if (initial.id) {
        await must(
          api.PUT("/api/v1/agent-pools/{pool_id}/freeze-schedules/{schedule_id}", {
            params: { path: { pool_id: poolId, schedule_id: initial.id } },
            body,
          }),
        );
      } else {
        await must(
          api.POST("/api/v1/agent-pools/{pool_id}/freeze-schedules", {
            params: { path: { pool_id: poolId } },
            body,
          }),
        );
        setDraft(EMPTY);
      }
      onDone();
    });
  };

  const details = error instanceof ApiError ? error.details : [];
  const known = ["from_time", "to_time", "weekdays", "timezone", "policy", "note"];
  const issues = (field: string) => details.filter((d) => d.field.split(".")[0] === field);
  const toggle = (day: number) =>
    setDraft({
      ...draft,
      weekdays: draft.weekdays.includes(day)
        ? draft.weekdays.filter((d) => d !== day)
        : [...draft.weekdays, day],
    });

  return (
    <form className="card" onSubmit={submit} aria-labelledby="schedule-form-title" noValidate>
      <h3 id="schedule-form-title">{editing ? "Edit the window" : "Add a freeze window"}</h3>
      <div className="grid-3">
        <Field label="From" issues={issues("from_time")}>
          {(props) => (
            <input
              {...props}
              type="time"
              value={draft.from_time}
              onChange={(e) => setDraft({ ...draft, from_time: e.target.value })}
            />
          )}
        </Field>
        <Field label="To" issues={issues("to_time")} help="Earlier than From: ends the next day.">
          {(props) => (
            <input
              {...props}
              type="time"
              value={draft.to_time}
              onChange={(e) => setDraft({ ...draft, to_time: e.target.value })}
            />
          )}
        </Field>
        <Field label="Policy" issues={issues("policy")}>
          {(props) => (
            <select
              {...props}
              value={draft.policy ?? "scale_to_zero"}
              onChange={(e) => setDraft({ ...draft, policy: e.target.value as Policy })}
            >
              <option value="scale_to_zero">scale_to_zero</option>
              <option value="no_new_tasks">no_new_tasks</option>
            </select>
          )}
        </Field>
      </div>
      <fieldset className="weekdays">
        <legend>Weekdays</legend>
        {DAYS.map((day, i) => (
          <label key={day} className="check">
            <input
              type="checkbox"
              checked={draft.weekdays.includes(i + 1)}
              onChange={() => toggle(i + 1)}
            />
            {day}
          </label>
        ))}
        {issues("weekdays").map((d, i) => (
          <p key={i} className="field-error" role="alert">
            {d.message}
          </p>
        ))}
      </fieldset>
      <div className="grid-2">
        <Field label="Time zone" issues={issues("timezone")} help="IANA name, e.g. Europe/Berlin">
          {(props) => (
            <input
              {...props}
              value={draft.timezone ?? ""}
              onChange={(e) => setDraft({ ...draft, timezone: e.target.value })}
            />
          )}
        </Field>
        <Field label="Note" issues={issues("note")}>
          {(props) => (
            <input
              {...props}
              value={draft.note ?? ""}
              onChange={(e) => setDraft({ ...draft, note: e.target.value })}
            />
          )}
        </Field>
      </div>
      <ErrorBox error={error} details={details.filter((d) => !known.includes(d.field.split(".")[0] ?? ""))} />
      <div className="actions">
        <button type="submit" disabled={busy}>
          {editing ? "Save the window" : "Add window"}
        </button>
        {onCancel && (
          <button type="button" className="secondary" onClick={onCancel}>
            Cancel editing
          </button>
        )}
      </div>
    </form>
  );
}

export function FreezePanel({ pool, onChange }: { pool: Pool; onChange: () => void }) {
  const path = { pool_id: pool.pool_id };
  const list = usePolled(
    () => must(api.GET("/api/v1/agent-pools/{pool_id}/freeze-schedules", { params: { path } })),
    pool.pool_id,
    5000,
  );
  const [editing, setEditing] = useState<string | null>(null);
  const removing = useAction();

  const changed = async () => {
    setEditing(null);
    await list.reload();
    onChange();
  };
  const remove = (id: string) =>
    removing.run(async () => {
      await must(
        api.DELETE("/api/v1/agent-pools/{pool_id}/freeze-schedules/{schedule_id}", {
          params: { path: { pool_id: pool.pool_id, schedule_id: id } },
        }),
      );
      await changed();
    });

  if (list.data === undefined) {
    return list.error ? <ErrorBox error={list.error} /> : <Loading what="freeze windows" />;
  }
  const schedules = list.data.items as unknown as FreezeSchedule[];
  const freeze = list.data.freeze;
  const activeIds = new Set(freeze.windows.map((w) => w.schedule_id));
  const zones = [...new Set(schedules.map((s) => s.timezone || "UTC"))];
  const editingSchedule = schedules.find((s) => s.id === editing);

  return (
    <div>
      <ActiveState freeze={freeze} poolId={pool.pool_id} onChange={changed} />
      <ErrorBox error={removing.error ?? list.error} />
      <div className="two-col">
        <div>
          <h2>Windows</h2>
          {schedules.length === 0 ? (
            <p className="muted">No freeze window.</p>
          ) : (
            <table className="data">
              <caption className="visually-hidden">Freeze windows</caption>
              <thead>
                <tr>
                  <th scope="col">When</th>
                  <th scope="col">Days</th>
                  <th scope="col">Zone</th>
                  <th scope="col">Policy</th>
                  <th scope="col">Actions</th>
                </tr>
              </thead>
              <tbody>
                {schedules.map((s) => (
                  <tr key={s.id}>
                    <td>
                      {s.from_time}–{s.to_time}
                      {s.to_time < s.from_time && <span className="muted small"> (next day)</span>}
                      {activeIds.has(s.id ?? "") && <Badge kind="frozen">active now</Badge>}
                      {s.note && <div className="muted small">{s.note}</div>}
                    </td>
                    <td>{s.weekdays.map((d) => DAYS[d - 1]).join(", ")}</td>
                    <td>{s.timezone || "server default"}</td>
                    <td>{s.policy}</td>
                    <td className="nowrap">
                      <button
                        type="button"
                        className="secondary small"
                        onClick={() => setEditing(s.id ?? null)}
                        aria-label={`Edit window ${s.from_time}-${s.to_time}`}
                      >
                        Edit
                      </button>{" "}
                      <button
                        type="button"
                        className="danger small"
                        onClick={() => s.id && remove(s.id)}
                        aria-label={`Delete window ${s.from_time}-${s.to_time}`}
                      >
                        Delete
                      </button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          {zones.map((zone) => (
            <WeekView
              key={zone}
              zone={zone}
              schedules={schedules.filter((s) => (s.timezone || "UTC") === zone)}
            />
          ))}
        </div>
        {editingSchedule ? (
          <ScheduleForm
            key={editingSchedule.id}
            poolId={pool.pool_id}
            initial={editingSchedule}
            onDone={changed}
            onCancel={() => setEditing(null)}
          />
        ) : (
          <ScheduleForm key="new" poolId={pool.pool_id} initial={EMPTY} onDone={changed} />
        )}
      </div>
    </div>
  );
}
