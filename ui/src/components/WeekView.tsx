import type { FreezeSchedule } from "../api/client";

export const DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const HOURS = Array.from({ length: 24 }, (_, h) => h);

function minutes(hhmm: string): number {
  const [h, m] = hhmm.split(":").map(Number);
  return (h ?? 0) * 60 + (m ?? 0);
}

/** Minutes of the week [start, end) each window covers; overnight windows spill into the next
 * day (Sunday's into Monday). Weekdays are 1 (Monday) to 7. */
export function covered(schedule: FreezeSchedule): [number, number][] {
  const from = minutes(schedule.from_time);
  const to = minutes(schedule.to_time);
  const week = 7 * 24 * 60;
  const out: [number, number][] = [];
  for (const day of schedule.weekdays) {
    const start = (day - 1) * 24 * 60 + from;
    const end = (day - 1) * 24 * 60 + to + (to <= from ? 24 * 60 : 0);
    if (end <= week) out.push([start, end]);
    else out.push([start, week], [0, end - week]);
  }
  return out;
}

/** The week as 7 days x 24 hours; an hour is shaded if any window touches it. */
export function WeekView({ schedules, zone }: { schedules: FreezeSchedule[]; zone: string }) {
  const spans = schedules.flatMap((s) => covered(s).map((span) => ({ span, s })));
  const nowInZone = currentSlot(zone);
  return (
    <figure className="week">
      <figcaption>
        Week in <strong>{zone}</strong> (shaded: frozen; outlined: now)
      </figcaption>
      <table className="week-grid">
        <thead>
          <tr>
            <td />
            {HOURS.map((h) => (
              <th scope="col" key={h}>
                {h % 3 === 0 ? String(h).padStart(2, "0") : ""}
                <span className="visually-hidden">{h % 3 === 0 ? "" : `${h}:00`}</span>
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {DAYS.map((day, d) => (
            <tr key={day}>
              <th scope="row">{day}</th>
              {HOURS.map((h) => {
                const start = (d * 24 + h) * 60;
                const hits = spans.filter(({ span }) => span[0] < start + 60 && span[1] > start);
                const now = nowInZone === d * 24 + h;
                const label = `${day} ${String(h).padStart(2, "0")}:00 ${
                  hits.length ? "frozen" : "open"
                }${now ? " (now)" : ""}`;
                return (
                  <td
                    key={h}
                    className={`${hits.length ? "frozen" : ""} ${now ? "now" : ""}`}
                    title={
                      hits.length
                        ? `${label}: ${hits.map(({ s }) => `${s.from_time}-${s.to_time}`).join(", ")}`
                        : label
                    }
                    aria-label={label}
                  />
                );
              })}
            </tr>
          ))}
        </tbody>
      </table>
    </figure>
  );
}

/** The hour of the week (0 = Monday 00:00) it is now in `zone`, or -1 if the zone is unknown. */
function currentSlot(zone: string): number {
  try {
    const parts = new Intl.DateTimeFormat("en-GB", {
      timeZone: zone,
      weekday: "short",
      hour: "2-digit",
      hourCycle: "h23",
    }).formatToParts(new Date());
    const weekday = parts.find((p) => p.type === "weekday")?.value ?? "";
    const hour = Number(parts.find((p) => p.type === "hour")?.value ?? "0");
    const d = DAYS.indexOf(weekday);
    return d < 0 ? -1 : d * 24 + hour;
  } catch {
    return -1;
  }
}
