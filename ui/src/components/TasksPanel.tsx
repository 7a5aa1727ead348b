import { useState, type FormEvent } from "react";
import { api, ApiError, must, type Pool, type StepSpec, type Task } from "../api/client";
import { when } from "../format";
import { useAction, usePolled } from "../hooks";
import { Link, navigate } from "../router";
import { Badge, ErrorBox, Field, Loading } from "./common";

type StepDraft = { name: string; run: string; requires_approval: boolean };

const FINAL = new Set(["succeeded", "failed", "cancelled", "timed_out", "lost", "expired"]);

export function isFinal(task: Task): boolean {
  return FINAL.has(task.status);
}

export function StatusBadge({ status }: { status: string }) {
  return <Badge kind={status}>{status.replaceAll("_", " ")}</Badge>;
}

function SubmitTask({ pool }: { pool: Pool }) {
  const [name, setName] = useState("");
  const [steps, setSteps] = useState<StepDraft[]>([{ name: "", run: "", requires_approval: false }]);
  const submitting = useAction();

  const update = (index: number, change: Partial<StepDraft>) =>
    setSteps(steps.map((s, i) => (i === index ? { ...s, ...change } : s)));

  const submit = (event: FormEvent) => {
    event.preventDefault();
    void submitting.run(async () => {
      const body: StepSpec[] = steps.map((s, i) => ({
        name: s.name.trim() || `step ${i + 1}`,
        run: s.run,
        requires_approval: s.requires_approval,
      }));
      const task = await must(
        api.POST("/api/v1/tasks", {
          body: { pool_id: pool.pool_id, name: name.trim(), steps: body },
        }),
      );
      navigate(`/tasks/${task.id}`);
    });
  };

  const { busy, error } = submitting;
  const details = error instanceof ApiError ? error.details : [];
  const issuesOf = (prefix: string) => details.filter((d) => d.field.startsWith(prefix));
  return (
    <form className="card" onSubmit={submit} aria-labelledby="submit-task-title">
      <h2 id="submit-task-title">Submit a task</h2>
      <Field label="Task name" issues={issuesOf("name")}>
        {(props) => (
          <input
            {...props}
            value={name}
            placeholder="optional"
            onChange={(e) => setName(e.target.value)}
          />
        )}
      </Field>
      <ol className="steps">
        {steps.map((step, i) => (
          <li key={i}>
            <fieldset>
              <legend>Step {i + 1}</legend>
              <div className="grid-step">
                <Field label={`Step ${i + 1} name`} issues={issuesOf(`steps.${i}.name`)}>
                  {(props) => (
                    <input
                      {...props}
                      value={step.name}
                      placeholder={`step ${i + 1}`}
                      onChange={(e) => update(i, { name: e.target.value })}
                    />
                  )}
                </Field>
                <Field
                  label={`Step ${i + 1} command`}
                  issues={issuesOf(`steps.${i}.run`)}
                  help="Run by the agent's shell, e.g. terraform plan -out plan.tfplan"
                >
                  {(props) => (
                    <textarea
                      {...props}
                      rows={2}
                      className="mono"
                      value={step.run}
                      onChange={(e) => update(i, { run: e.target.value })}
                      required
                    />
                  )}
                </Field>
              </div>
              <div className="row">
                <label className="check">
                  <input
                    type="checkbox"
                    checked={step.requires_approval}
                    onChange={(e) => update(i, { requires_approval: e.target.checked })}
                  />
                  Step {i + 1} requires approval before it runs
                </label>
                {steps.length > 1 && (
                  <button
                    type="button"
                    className="secondary small"
                    onClick={() => setSteps(steps.filter((_, j) => j !== i))}
                  >
                    Remove step {i + 1}
                  </button>
                )}
              </div>
            </fieldset>
          </li>
        ))}
      </ol>
      <ErrorBox
        error={error}
        details={details.filter((d) => !d.field.startsWith("steps.") && d.field !== "name")}
      />
      <div className="actions">
        <button
          type="button"
          className="secondary"
          onClick={() => setSteps([...steps, { name: "", run: "", requires_approval: false }])}
        >
          Add a step
        </button>
        <button type="submit" disabled={busy || steps.some((s) => !s.run.trim())}>
          Submit task
        </button>
      </div>
    </form>
  );
}

export function TasksPanel({ pool }: { pool: Pool }) {
  const tasks = usePolled(
    () =>
      must(api.GET("/api/v1/tasks", { params: { query: { pool_id: pool.pool_id, limit: 50 } } })),
    pool.pool_id,
    2000,
  );
  return (
    <div className="two-col">
      <div>
        <h2>Recent tasks</h2>
        <ErrorBox error={tasks.error} />
        {tasks.data === undefined ? (
          <Loading what="tasks" />
        ) : tasks.data.items.length === 0 ? (
          <p className="muted">No task has been submitted to this pool.</p>
        ) : (
          <table className="data">
            <caption className="visually-hidden">Tasks of this pool</caption>
            <thead>
              <tr>
                <th scope="col">Task</th>
                <th scope="col">Status</th>
                <th scope="col">Steps</th>
                <th scope="col">Submitted</th>
              </tr>
            </thead>
            <tbody>
              {tasks.data.items.map((task) => (
                <tr key={task.id}>
                  <th scope="row">
                    <Link to={`/tasks/${task.id}`}>{task.name || task.id}</Link>
                    {task.name && <div className="muted small mono">{task.id}</div>}
                  </th>
                  <td>
                    <StatusBadge status={task.status} />
                  </td>
                  <td>
                    {Math.min(task.current_step + 1, task.steps.length)} / {task.steps.length}
                  </td>
                  <td>{when(task.created_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </div>
      <SubmitTask pool={pool} />
    </div>
  );
}
