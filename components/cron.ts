// How long a CronJob schedule may leave between two runs: alert thresholds ("no successful backup
// for more than the schedule interval + margin") derive from it rather than from a guess.

const MACROS: Record<string, string> = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
};
const MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

function expand(field: string, min: number, max: number, names?: string[], offset = 0): Set<number> {
    const out = new Set<number>();
    const value = (tok: string): number => {
        const i = names?.indexOf(tok.toUpperCase()) ?? -1;
        return i >= 0 ? i + offset : Number(tok);
    };
    for (const part of field.split(",")) {
        const [range, stepText] = part.split("/");
        const step = stepText === undefined ? 1 : Number(stepText);
        let lo = min;
        let hi = max;
        if (range !== "*" && range !== "?") {
            const [a, b] = range.split("-");
            lo = value(a);
            hi = b === undefined ? (stepText === undefined ? lo : max) : value(b);
        }
        for (let v = lo; v <= hi; v += step) out.add(v);
    }
    return out;
}

/**
 * The longest gap, in seconds, between two consecutive runs of a (valid, see config.ts) cron
 * schedule, found by walking two years of minutes in UTC. A time zone's daylight-saving shift can
 * stretch one gap by an hour; the alert margins cover that.
 */
export function cronMaxIntervalSeconds(schedule: string): number {
    const fields = (MACROS[schedule] ?? schedule).trim().split(/\s+/);
    const minutes = expand(fields[0], 0, 59);
    const hours = expand(fields[1], 0, 23);
    const doms = expand(fields[2], 1, 31);
    const months = expand(fields[3], 1, 12, MONTHS, 1);
    const dows = new Set([...expand(fields[4], 0, 7, DAYS)].map((d) => d % 7));
    // Kubernetes (robfig/cron) ORs day-of-month and day-of-week when both are restricted.
    const domStar = fields[2] === "*" || fields[2] === "?";
    const dowStar = fields[4] === "*" || fields[4] === "?";
    const start = Date.UTC(2026, 0, 1);
    let last: number | undefined;
    let longest = 0;
    for (let day = 0; day < 2 * 366 + 31; day++) {
        const d = new Date(start + day * 86_400_000);
        if (!months.has(d.getUTCMonth() + 1)) continue;
        const domOk = doms.has(d.getUTCDate());
        const dowOk = dows.has(d.getUTCDay());
        const dayOk = domStar && dowStar ? true : domStar ? dowOk : dowStar ? domOk : domOk || dowOk;
        if (!dayOk) continue;
        for (const h of [...hours].sort((a, b) => a - b)) {
            for (const m of [...minutes].sort((a, b) => a - b)) {
                const t = d.getTime() + (h * 60 + m) * 60_000;
                if (last !== undefined) longest = Math.max(longest, t - last);
                last = t;
            }
        }
    }
    if (longest === 0) throw new Error(`schedule "${schedule}" does not run twice within two years`);
    return longest / 1000;
}
