import { type RefObject, useEffect, useRef, useState } from "react";
import { createPortal } from "react-dom";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { api, must, type Pool, type Schemas } from "../api/client";
import { when } from "../format";
import { usePolled } from "../hooks";
import { ErrorBox, Loading } from "./common";

type History = Schemas["PoolHistoryOut"];
type Point = Schemas["HistoryPointOut"];
type Decision = Schemas["DecisionOut"];
type FreezeInterval = Schemas["FreezeIntervalOut"];

/** The ranges offered, and how often each is read again while the page is open. */
const RANGES = [
  { id: "15m", label: "15 min", seconds: 15 * 60, refreshMs: 5_000 },
  { id: "1h", label: "1 hour", seconds: 3600, refreshMs: 10_000 },
  { id: "6h", label: "6 hours", seconds: 6 * 3600, refreshMs: 30_000 },
  { id: "24h", label: "24 hours", seconds: 24 * 3600, refreshMs: 60_000 },
  { id: "7d", label: "7 days", seconds: 7 * 24 * 3600, refreshMs: 60_000 },
] as const;
type RangeId = (typeof RANGES)[number]["id"];

const HEIGHT = 240;
const COLORS = {
  idle: "#9db4d0",
  reserved: "#d39b2a",
  busy: "#1f5fbf",
  queued: "#b3261e",
  pods: "#1e7a3c",
  ready: "#6fae80",
  desired: "#1d2330",
};

type Series = (number | null)[];

/** The chart's columns: x (seconds), the slots stacked (idle on top of reserved on top of busy:
 * each drawn as the running total), the lines; and the raw slot values the legend shows. */
function columns(points: Point[]) {
  const x = points.map((p) => Date.parse(p.at) / 1000);
  const busy: Series = points.map((p) => p.slots_busy);
  const reserved: Series = points.map((p) => p.slots_reserved);
  const idle: Series = points.map((p) => p.slots_idle);
  const sum = (...values: (number | null)[]) =>
    values.some((v) => v === null) ? null : values.reduce<number>((a, v) => a + (v ?? 0), 0);
  const pods: Series = points.map((p) =>
    sum(p.pods_pending, p.pods_starting, p.pods_ready, p.pods_stopping),
  );
  const data: uPlot.AlignedData = [
    x,
    points.map((p) => sum(p.slots_busy, p.slots_reserved, p.slots_idle)),
    points.map((p) => sum(p.slots_busy, p.slots_reserved)),
    busy,
    points.map((p) => p.tasks_queued),
    pods,
    points.map((p) => p.pods_ready),
    points.map((p) => p.pods_desired),
  ];
  return { data, raw: { idle, reserved, busy } };
}

function peak(values: Series): number {
  return values.reduce<number>((a, v) => Math.max(a, v ?? 0), 0);
}

const INTEGER_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000];

function options(width: number, raw: RefObject<Record<string, Series>>): uPlot.Options {
  const stepped = uPlot.paths.stepped!({ align: 1 });
  const shown = (key: string) => (_u: uPlot, _v: number | null, _s: number, index: number | null) =>
    index === null ? "-" : String(raw.current?.[key]?.[index] ?? "-");
  const area = (label: string, key: keyof typeof COLORS, alpha: string): uPlot.Series => ({
    label,
    stroke: COLORS[key],
    fill: COLORS[key] + alpha,
    width: 1,
    paths: stepped,
    value: shown(key),
  });
  const line = (label: string, key: keyof typeof COLORS, extra: Partial<uPlot.Series> = {}) => ({
    label,
    stroke: COLORS[key],
    width: 2,
    paths: stepped,
    ...extra,
  });
  const upFromZero = (_u: uPlot, _min: number, max: number): uPlot.Range.MinMax => [
    0,
    Math.max(4, Math.ceil(max * 1.1)),
  ];
  return {
    width,
    height: HEIGHT,
    scales: { x: { time: true }, y: { range: upFromZero }, pods: { range: upFromZero } },
    series: [
      {},
      area("Idle slots", "idle", "66"),
      area("Reserved slots", "reserved", "99"),
      area("Busy slots", "busy", "aa"),
      line("Queued tasks", "queued"),
      line("Pods", "pods", { scale: "pods" }),
      line("Pods ready", "ready", { scale: "pods", dash: [3, 3] }),
      line("Pods desired", "desired", { scale: "pods", dash: [8, 4], width: 1.5 }),
    ],
    axes: [
      {},
      { label: "slots · tasks", incrs: INTEGER_STEPS, size: 50 },
      { label: "Pods", scale: "pods", side: 1, incrs: INTEGER_STEPS, grid: { show: false } },
    ],
    legend: { live: true },
    cursor: { drag: { x: false, y: false } },
  };
}

function decisionKind(action: string): string {
  if (action === "create_pods") return "up";
  if (action === "delete_pod" || action === "delete_stuck_pod") return "down";
  if (action === "rebuild_pod") return "rebuild";
  return "hold";
}

/** Decisions closer than this (pixels) share one mark, whose tip lists them all. */
const MARK_SPACING = 10;
const TIP_LINES = 8;

type Cluster = { left: number; decisions: Decision[] };

function clusters(decisions: Decision[], x: (at: string) => number, width: number): Cluster[] {
  const out: Cluster[] = [];
  for (const decision of decisions) {
    const left = x(decision.at);
    if (left < 0 || left > width) continue;
    const last = out[out.length - 1];
    if (last && left - last.left < MARK_SPACING) last.decisions.push(decision);
    else out.push({ left, decisions: [decision] });
  }
  return out;
}

/** A cluster's colour: scaled up, down, both ("mixed"), rebuilt, or only held back. */
function clusterKind(decisions: Decision[]): string {
  const kinds = new Set(decisions.map((d) => decisionKind(d.action)));
  if (kinds.has("up") && kinds.has("down")) return "mixed";
  return ["up", "down", "rebuild", "hold"].find((k) => kinds.has(k)) ?? "hold";
}

function describe(decision: Decision): string {
  return `${decision.action} (${decision.reason}, ${decision.outcome}): ${decision.message}`;
}

function DecisionMark({ cluster, tipLeft }: { cluster: Cluster; tipLeft: boolean }) {
  const { decisions } = cluster;
  const label = decisions.map((d) => `${when(d.at)} ${describe(d)}`).join("; ");
  const more = decisions.length - TIP_LINES;
  return (
    <button
      type="button"
      className={`chart-mark mark-${clusterKind(decisions)}${tipLeft ? " tip-left" : ""}`}
      style={{ left: `${cluster.left}px` }}
      aria-label={`${decisions.length === 1 ? "Decision" : `${decisions.length} decisions`}: ${label}`}
    >
      <span className="chart-tip" role="tooltip">
        {decisions.slice(0, TIP_LINES).map((d) => (
          <span key={d.id} className={`tip-line tip-${decisionKind(d.action)}`}>
            <strong>{d.action}</strong> · {d.reason} · {d.outcome}{" "}
            <span className="muted">{when(d.at)}</span>
            {d.pod && <span className="mono"> · {d.pod}</span>}
            <br />
            {d.message}
          </span>
        ))}
        {more > 0 && <span className="tip-line muted">and {more} more (the Decision log has them all)</span>}
      </span>
    </button>
  );
}

function FreezeBand({ interval, left, width }: { interval: FreezeInterval; left: number; width: number }) {
  const label = `frozen ${when(interval.start)} to ${when(interval.end)} (${interval.policy}): ${interval.windows.join(", ")}`;
  return (
    <div
      className={`chart-freeze freeze-${interval.policy}`}
      style={{ left: `${left}px`, width: `${width}px` }}
      title={label}
      aria-label={label}
      role="img"
    />
  );
}

/** The decision marks and freeze bands, laid over the plot area (uPlot's `over` element). */
function Overlay({ plot, history }: { plot: uPlot; history: History }) {
  const width = plot.over.clientWidth;
  const x = (at: string) => plot.valToPos(Date.parse(at) / 1000, "x");
  return createPortal(
    <>
      {history.freeze.map((interval) => {
        const left = Math.max(0, x(interval.start));
        const right = Math.min(width, x(interval.end));
        return right > left ? (
          <FreezeBand key={interval.start} interval={interval} left={left} width={right - left} />
        ) : null;
      })}
      {clusters(history.decisions, x, width).map((cluster) => (
        <DecisionMark
          key={cluster.decisions[0]?.id}
          cluster={cluster}
          tipLeft={cluster.left > width / 2}
        />
      ))}
    </>,
    plot.over,
  );
}

function Peaks({ history, pool }: { history: History; pool: Pool }) {
  const { data } = columns(history.points);
  const max = pool.k8s_config?.max_replicas;
  const scaled = history.decisions.filter((d) => d.action !== "hold").length;
  return (
    <p className="small chart-peaks" aria-label="Peaks in this range">
      In this range: at most <strong>{peak(data[3] as Series)}</strong> busy of{" "}
      {peak(data[1] as Series)} slots, <strong>{peak(data[4] as Series)}</strong> queued tasks,{" "}
      <strong>{peak(data[5] as Series)}</strong> Pods
      {max !== undefined && ` (max_replicas ${max})`}; {scaled} scaling action
      {scaled === 1 ? "" : "s"}, {history.decisions.length - scaled} hold
      {history.decisions.length - scaled === 1 ? "" : "s"}
      {history.freeze.length > 0 && `, ${history.freeze.length} freeze interval${history.freeze.length === 1 ? "" : "s"}`}.
    </p>
  );
}

/** The pool over time: slots stacked (busy, reserved, idle), queued tasks and Pods, the
 * controller's decisions as marks (hover or focus one for its reason) and freeze windows shaded. */
export function HistoryChart({ pool }: { pool: Pool }) {
  const [range, setRange] = useState<RangeId>("1h");
  const chosen = RANGES.find((r) => r.id === range) ?? RANGES[1];
  const history = usePolled(
    () =>
      must(
        api.GET("/api/v1/agent-pools/{pool_id}/history", {
          params: { path: { pool_id: pool.pool_id }, query: { range } },
        }),
      ),
    `${pool.pool_id}/${range}`,
    chosen.refreshMs,
  );
  const box = useRef<HTMLDivElement>(null);
  const raw = useRef<Record<string, Series>>({});
  const [plot, setPlot] = useState<uPlot | null>(null);
  const [, relayout] = useState(0);
  const [maxSeconds, setMaxSeconds] = useState<number | null>(null);

  // The plot is made once and kept; new data and sizes are given to it.
  useEffect(() => {
    const element = box.current;
    if (!element) return;
    const made = new uPlot(options(element.clientWidth || 800, raw), [[], [], [], [], [], [], [], []], element);
    setPlot(made);
    const resized = new ResizeObserver(() => {
      made.setSize({ width: element.clientWidth, height: HEIGHT });
      relayout((n) => n + 1);
    });
    resized.observe(element);
    return () => {
      resized.disconnect();
      made.destroy();
      setPlot(null);
    };
  }, []);

  const data = history.data;
  useEffect(() => {
    if (!plot || !data) return;
    const { data: columnsOf, raw: values } = columns(data.points);
    raw.current = values;
    plot.batch(() => {
      plot.setData(columnsOf, false);
      plot.setScale("x", { min: Date.parse(data.since) / 1000, max: Date.parse(data.until) / 1000 });
    });
    setMaxSeconds(data.max_range_seconds);
    relayout((n) => n + 1);
  }, [plot, data]);

  return (
    <section className="history card" aria-label="Pool history">
      <div className="toolbar">
        <h2>Over time</h2>
        <div role="group" aria-label="Range" className="range-picker">
          {RANGES.map((r) => (
            <button
              key={r.id}
              type="button"
              className={r.id === range ? "small" : "secondary small"}
              aria-pressed={r.id === range}
              disabled={maxSeconds !== null && r.seconds > maxSeconds}
              title={
                maxSeconds !== null && r.seconds > maxSeconds
                  ? "longer than this server keeps samples for one chart"
                  : undefined
              }
              onClick={() => setRange(r.id)}
            >
              {r.label}
            </button>
          ))}
        </div>
      </div>
      <ErrorBox error={history.error} />
      <figure className="history-chart" aria-label="Slots, queued tasks and Pods over time">
        <div ref={box} className="chart-box" />
        {plot && data && <Overlay plot={plot} history={data} />}
        <figcaption className="chart-legend small">
          <span className="key key-up">scaled up</span>
          <span className="key key-down">scaled down</span>
          <span className="key key-rebuild">rebuilt</span>
          <span className="key key-hold">held back</span>
          <span className="key key-mixed">up and down</span>
          <span className="key key-freeze">freeze window</span>
          <span className="muted">
            {" "}
            · hover or focus a mark for the decision; a gap: nothing was sampled
            {data && ` · a point every ${data.step_seconds} s, read every ${chosen.refreshMs / 1000} s`}
          </span>
        </figcaption>
      </figure>
      {data ? <Peaks history={data} pool={pool} /> : history.error ? null : <Loading what="the history" />}
      {data && data.interval_seconds === 0 && (
        <p className="muted small">This server samples no history (SLOTPOOL_HISTORY_INTERVAL_SECONDS=0).</p>
      )}
    </section>
  );
}
