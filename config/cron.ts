// CronJob schedules checked the way Kubernetes checks them. The API server validates
// spec.schedule with github.com/robfig/cron/v3's ParseStandard (pkg/apis/batch/validation), and
// the CronJob controller computes run times with the same library; this is that parser's
// semantics (parser.go: getField, getRange, parseIntOrName, parseDescriptor) plus a check the
// library only reveals at run time: a schedule whose day and month never meet never runs
// (spec.Next returns the zero time after searching five years and the job silently never starts).
import { TIME_ZONES } from "./timeZones";

interface Field {
    name: string;
    min: number;
    max: number;
    names?: Record<string, number>;
}

const MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DOW_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

// Bounds of robfig/cron's standard parser: day of week is 0-6 (Sunday = 0; 7 is refused there).
const FIELDS: Field[] = [
    { name: "minute", min: 0, max: 59 },
    { name: "hour", min: 0, max: 23 },
    { name: "day of month", min: 1, max: 31 },
    { name: "month", min: 1, max: 12, names: Object.fromEntries(MONTH_NAMES.map((n, i) => [n, i + 1])) },
    { name: "day of week", min: 0, max: 6, names: Object.fromEntries(DOW_NAMES.map((n, i) => [n, i])) },
];

// parseDescriptor: exact, case-sensitive matches.
const DESCRIPTORS = ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"];
// Go's time.ParseDuration syntax, which "@every <duration>" takes.
const GO_DURATION = /^([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))*$/;

/** The values a field matches, and whether it was written as * or ? (robfig's star bit). */
interface ParsedField {
    values: Set<number>;
    star: boolean;
}

class CronError extends Error {}

/** strconv.Atoi then a sign check, as mustParseInt does. */
function parseInt10(expr: string, field: Field): number {
    if (!/^[+-]?[0-9]+$/.test(expr)) throw new CronError(`${field.name}: failed to parse int from "${expr}"`);
    const n = Number(expr);
    if (n < 0) throw new CronError(`${field.name}: negative number (${n}) not allowed`);
    return n;
}

function parseIntOrName(expr: string, field: Field): number {
    // Own keys only: "constructor" is not a month.
    const key = expr.toLowerCase();
    return field.names && Object.hasOwn(field.names, key) ? field.names[key] : parseInt10(expr, field);
}

function parseRange(expr: string, field: Field, into: ParsedField): void {
    const rangeAndStep = expr.split("/");
    const lowAndHigh = rangeAndStep[0].split("-");
    const singleDigit = lowAndHigh.length === 1;
    let start: number;
    let end: number;
    let star = false;
    if (lowAndHigh[0] === "*" || lowAndHigh[0] === "?") {
        start = field.min;
        end = field.max;
        star = true;
    } else {
        start = parseIntOrName(lowAndHigh[0], field);
        if (lowAndHigh.length === 1) end = start;
        else if (lowAndHigh.length === 2) end = parseIntOrName(lowAndHigh[1], field);
        else throw new CronError(`${field.name}: too many hyphens in "${expr}"`);
    }
    let step = 1;
    if (rangeAndStep.length === 2) {
        step = parseInt10(rangeAndStep[1], field);
        // "N/step" means "N-max/step".
        if (singleDigit) end = field.max;
        // "*/2" is a restriction, not a wildcard: it no longer counts as * for the day rule below.
        if (step > 1) star = false;
    } else if (rangeAndStep.length > 2) {
        throw new CronError(`${field.name}: too many slashes in "${expr}"`);
    }
    if (start < field.min) throw new CronError(`${field.name}: beginning of range (${start}) below minimum (${field.min}) in "${expr}"`);
    if (end > field.max) throw new CronError(`${field.name}: end of range (${end}) above maximum (${field.max}) in "${expr}"`);
    if (start > end) throw new CronError(`${field.name}: beginning of range (${start}) beyond end of range (${end}) in "${expr}"`);
    if (step === 0) throw new CronError(`${field.name}: step of range should be a positive number in "${expr}"`);
    for (let v = start; v <= end; v += step) into.values.add(v);
    into.star = into.star || star;
}

function parseField(text: string, field: Field): ParsedField {
    const parsed: ParsedField = { values: new Set(), star: false };
    for (const expr of text.split(",")) parseRange(expr, field, parsed);
    return parsed;
}

// Longest month in which a day can fall; 29 for February (leap years come within robfig's 5-year search).
const DAYS_IN_MONTH = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** Go's time.ParseDuration, in seconds, for a string GO_DURATION accepts. */
function goDurationSeconds(d: string): number {
    const unit: Record<string, number> = { ns: 1e-9, us: 1e-6, "µs": 1e-6, "μs": 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600 };
    let total = 0;
    for (const [, n, u] of d.matchAll(/([0-9]*\.?[0-9]*)(ns|us|µs|μs|ms|s|m|h)/g)) total += Number(n) * unit[u];
    return total;
}

/** What a descriptor stands for as five fields (robfig's parseDescriptor, without its seconds field). */
const DESCRIPTOR_FIELDS: Record<string, string> = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
};

/** The five fields of a schedule robfig would accept, or the seconds between runs of @every. */
function parseSchedule(schedule: string): ParsedField[] | number {
    if (schedule.includes("TZ")) throw new CronError("must not set a time zone in the schedule (use timeZone)");
    let fields: string[];
    // Descriptors as robfig matches them: only at the very start, exactly, the duration as written.
    if (schedule.startsWith("@")) {
        if (schedule.startsWith("@every ")) {
            const d = schedule.slice("@every ".length);
            if (!GO_DURATION.test(d)) throw new CronError(`has an @every duration "${d}" that is not a Go duration (e.g. 1h30m)`);
            // robfig's Every: whole seconds, at least one.
            return Math.max(1, Math.floor(goDurationSeconds(d)));
        }
        if (!DESCRIPTORS.includes(schedule)) throw new CronError(`is not a recognized descriptor (${DESCRIPTORS.join(", ")}, @every <duration>)`);
        fields = DESCRIPTOR_FIELDS[schedule].split(" ");
    } else {
        fields = schedule.split(/\s+/).filter((f) => f !== "");
    }
    if (fields.length !== 5) throw new CronError(`has ${fields.length} fields; expected exactly 5 (minute hour day-of-month month day-of-week)`);
    try {
        return fields.map((f, i) => parseField(f, FIELDS[i]));
    } catch (err) {
        if (err instanceof CronError) throw new CronError(`is not valid: ${err.message} (day of week is 0-6 or SUN-SAT, months 1-12 or JAN-DEC)`);
        throw err;
    }
}

/**
 * Returns why Kubernetes would refuse (or never run) a CronJob schedule, or undefined when it is
 * a schedule the CronJob controller runs. Time zones belong in spec.timeZone: the API server
 * refuses "TZ" in the schedule when timeZone is set, which this program always does.
 */
export function cronProblem(schedule: string): string | undefined {
    let parsed: ParsedField[] | number;
    try {
        parsed = parseSchedule(schedule);
    } catch (err) {
        if (err instanceof CronError) return err.message;
        throw err;
    }
    if (typeof parsed === "number") return undefined;
    const fields = schedule.trim().split(/\s+/);
    const [, , dom, month, dow] = parsed;
    // robfig's dayMatches: when either day field is * the two must both match (AND), otherwise
    // either may (OR). Only the AND case can leave a schedule with no day at all.
    if (dow.star && !dom.star) {
        const meets = [...month.values].some((m) => [...dom.values].some((d) => d <= DAYS_IN_MONTH[m - 1]));
        if (!meets) return `never runs: no month in "${fields[3]}" has day "${fields[2]}"`;
    }
    return undefined;
}

/** Why a CronJob timeZone would be refused, with the right spelling when only the case is off. */
export function timeZoneProblem(tz: string): string | undefined {
    if (TIME_ZONES.includes(tz)) return undefined;
    const sameLetters = TIME_ZONES.find((z) => z.toLowerCase() === tz.toLowerCase());
    if (sameLetters) return `is not an IANA time zone as spelled in the tz database (case matters): did you mean "${sameLetters}"?`;
    return "is not an IANA time zone name (e.g. Etc/UTC, Europe/Berlin)";
}

/**
 * The longest gap, in seconds, between two consecutive runs of a schedule cronProblem accepts:
 * alert thresholds ("no successful backup for more than the schedule's interval + margin") derive
 * from it rather than from a guess. Found by walking eight years of minutes in UTC (two leap
 * days: "0 2 29 2 *" is a schedule too); a time zone's
 * daylight-saving shift can stretch one gap by an hour, which the alert margins cover.
 */
export function cronMaxIntervalSeconds(schedule: string): number {
    const parsed = parseSchedule(schedule);
    if (typeof parsed === "number") return parsed;
    const [minute, hour, dom, month, dow] = parsed;
    const minutes = [...minute.values].sort((a, b) => a - b);
    const hours = [...hour.values].sort((a, b) => a - b);
    const start = Date.UTC(2026, 0, 1);
    let last: number | undefined;
    let longest = 0;
    for (let day = 0; day < 8 * 366 + 31; day++) {
        const d = new Date(start + day * 86_400_000);
        if (!month.values.has(d.getUTCMonth() + 1)) continue;
        // robfig's dayMatches: both day fields must match when either is *, otherwise either may.
        const domOk = dom.values.has(d.getUTCDate());
        const dowOk = dow.values.has(d.getUTCDay());
        if (dom.star || dow.star ? !(domOk && dowOk) : !(domOk || dowOk)) continue;
        for (const h of hours) {
            for (const m of minutes) {
                const t = d.getTime() + (h * 60 + m) * 60_000;
                if (last !== undefined) longest = Math.max(longest, t - last);
                last = t;
            }
        }
    }
    if (longest === 0) throw new Error(`schedule "${schedule}" does not run twice within eight years`);
    return longest / 1000;
}
