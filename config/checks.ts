// The building blocks of validation: a problem list that reports every bad key at once, typed
// readers that check a value and fall back to the default, and the shared formats.
import { ResourceSpec } from "./types";


const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
// Kubernetes quantities with a binary suffix: what volume and memory sizes are written in.
const BINARY_QUANTITY = /^([1-9][0-9]*)(Ki|Mi|Gi|Ti|Pi)$/;
const CPU_QUANTITY = /^([1-9][0-9]*m|[0-9]+(\.[0-9]+)?)$/;

/** Collects every problem found, then throws one error that lists them all. */
export class Problems {
    readonly list: string[] = [];
    add(key: string, value: unknown, allowed: string): void {
        this.list.push(`${key}: ${JSON.stringify(value)} ${allowed}`);
    }
}

export type Obj = Record<string, unknown>;

export function section(p: Problems, key: string, value: unknown): Obj {
    if (value === undefined || value === null) return {};
    if (typeof value !== "object" || Array.isArray(value)) {
        p.add(key, value, "is not an object of settings");
        return {};
    }
    const obj = value as Obj;
    return obj;
}

/** Levenshtein distance, for "did you mean" on misspelt keys. */
export function editDistance(a: string, b: string): number {
    const row = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
        let diag = row[0];
        row[0] = i;
        for (let j = 1; j <= b.length; j++) {
            const up = row[j];
            row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
            diag = up;
        }
    }
    return row[b.length];
}

/** The known key a typo most likely meant: same letters in another case, or a few edits away. */
export function didYouMean(key: string, known: readonly string[]): string | undefined {
    const lower = key.toLowerCase();
    let best: { k: string; d: number } | undefined;
    for (const k of known) {
        const d = k.toLowerCase() === lower ? 0 : editDistance(lower, k.toLowerCase());
        if (d <= Math.max(1, Math.floor(k.length / 4)) && (best === undefined || d < best.d)) best = { k, d };
    }
    return best?.k;
}

/** Unknown keys are almost always typos; silently ignoring them would deploy the default instead. */
export function noUnknownKeys(p: Problems, key: string, obj: Obj, known: readonly string[]): void {
    for (const k of Object.keys(obj)) {
        if (known.includes(k)) continue;
        const guess = didYouMean(k, known);
        p.add(key ? `${key}.${k}` : k, obj[k], `is not a known setting${guess ? `: did you mean ${key ? `${key}.` : ""}${guess}?` : ""} (known: ${known.join(", ")})`);
    }
}

/** A duration as PostgreSQL's timeout settings take it: an integer with an optional unit. */
export const isPgDuration = (v: string): boolean => /^[0-9]+(ms|s|min|h|d)?$/.test(v);

export function str(p: Problems, key: string, v: unknown, def: string, test: (s: string) => boolean, allowed: string): string {
    if (v === undefined) return def;
    if (typeof v !== "string" || !test(v)) {
        p.add(key, v, allowed);
        return def;
    }
    return v;
}

/** A string checked by a function that says why it is wrong (cron schedules, time zones), or undefined when it is right. */
export function explained(p: Problems, key: string, v: unknown, def: string, problem: (s: string) => string | undefined): string {
    if (v === undefined) return def;
    const why = typeof v === "string" ? problem(v) : "is not a string";
    if (why) {
        p.add(key, v, why);
        return def;
    }
    return v as string;
}

export function oneOf<T extends string>(p: Problems, key: string, v: unknown, def: T, values: readonly T[]): T {
    return str(p, key, v, def, (s) => (values as readonly string[]).includes(s), `is not one of ${values.join(", ")}`) as T;
}

export function int(p: Problems, key: string, v: unknown, def: number, min: number, max: number): number {
    if (v === undefined) return def;
    // Stack files written with `pulumi config set` hold numbers as strings.
    const n = typeof v === "string" && /^-?[0-9]+$/.test(v) ? Number(v) : v;
    if (typeof n !== "number" || !Number.isInteger(n) || n < min || n > max) {
        p.add(key, v, `is not a whole number from ${min} to ${max}`);
        return def;
    }
    return n;
}

export function bool(p: Problems, key: string, v: unknown, def: boolean): boolean {
    if (v === undefined) return def;
    if (v === true || v === "true") return true;
    if (v === false || v === "false") return false;
    p.add(key, v, "is not true or false");
    return def;
}

export function list(p: Problems, key: string, v: unknown, def: string[], test: (s: string) => boolean, allowed: string, minItems = 1): string[] {
    if (v === undefined) return def;
    if (!Array.isArray(v) || v.length < minItems) {
        p.add(key, v, `is not a list of ${minItems} or more items`);
        return def;
    }
    let ok = true;
    v.forEach((item, i) => {
        if (typeof item !== "string" || !test(item)) {
            p.add(`${key}[${i}]`, item, allowed);
            ok = false;
        }
    });
    if (ok && new Set(v).size !== v.length) {
        p.add(key, v, "has duplicate items");
        ok = false;
    }
    return ok ? (v as string[]) : def;
}

export function isDns1123Label(s: string): boolean {
    return s.length <= 63 && DNS1123_LABEL.test(s);
}

export function isBinaryQuantity(s: string): boolean {
    return BINARY_QUANTITY.test(s);
}

export function isCpuQuantity(s: string): boolean {
    return CPU_QUANTITY.test(s) && parseCpu(s) > 0;
}

/** Bytes of a binary quantity (e.g. "2Gi"). */
export function quantityBytes(s: string): number {
    const m = BINARY_QUANTITY.exec(s);
    if (!m) throw new Error(`not a binary quantity: ${s}`);
    const exp = ["Ki", "Mi", "Gi", "Ti", "Pi"].indexOf(m[2]) + 1;
    return Number(m[1]) * 1024 ** exp;
}

export function parseCpu(s: string): number {
    return s.endsWith("m") ? Number(s.slice(0, -1)) / 1000 : Number(s);
}

export function isIpv4Cidr(s: string): boolean {
    const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(s);
    if (!m) return false;
    const octets = m.slice(1, 5).map(Number);
    const prefix = Number(m[5]);
    if (octets.some((o) => o > 255) || prefix > 32) return false;
    const addr = octets.reduce((a, o) => a * 256 + o, 0);
    // Host bits must be zero: AWS rejects 10.0.0.1/16 as a VPC or allow-list CIDR.
    return addr % 2 ** (32 - prefix) === 0;
}


// RFC 5737's documentation ranges: copied from examples, never anyone's real address.
export const DOCUMENTATION_RANGES = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"];

export function cidrRange(cidr: string): [number, number] {
    const [ip, prefix] = cidr.split("/");
    const start = ip.split(".").reduce((a, o) => a * 256 + Number(o), 0);
    return [start, start + 2 ** (32 - Number(prefix)) - 1];
}

export function cidrWithin(inner: string, outer: string): boolean {
    const [i0, i1] = cidrRange(inner);
    const [o0, o1] = cidrRange(outer);
    return o0 <= i0 && i1 <= o1;
}

export function resources(p: Problems, key: string, v: unknown, def: ResourceSpec): ResourceSpec {
    const o = section(p, key, v);
    noUnknownKeys(p, key, o, ["cpuRequest", "memoryRequest", "cpuLimit", "memoryLimit"]);
    const cpuRequest = str(p, `${key}.cpuRequest`, o.cpuRequest, def.cpuRequest, isCpuQuantity, "is not a CPU quantity (e.g. 250m or 1)");
    const memoryRequest = str(p, `${key}.memoryRequest`, o.memoryRequest, def.memoryRequest, isBinaryQuantity, "is not a Kubernetes quantity (e.g. 512Mi or 2Gi)");
    const cpuLimit = o.cpuLimit === undefined ? def.cpuLimit : str(p, `${key}.cpuLimit`, o.cpuLimit, "", isCpuQuantity, "is not a CPU quantity (e.g. 500m or 2)");
    const memoryLimit = str(p, `${key}.memoryLimit`, o.memoryLimit, def.memoryLimit, isBinaryQuantity, "is not a Kubernetes quantity (e.g. 1Gi)");
    if (isBinaryQuantity(memoryRequest) && isBinaryQuantity(memoryLimit) && quantityBytes(memoryRequest) > quantityBytes(memoryLimit)) {
        p.add(`${key}.memoryRequest`, memoryRequest, `must not exceed memoryLimit (${memoryLimit})`);
    }
    if (cpuLimit && isCpuQuantity(cpuRequest) && isCpuQuantity(cpuLimit) && parseCpu(cpuRequest) > parseCpu(cpuLimit)) {
        p.add(`${key}.cpuRequest`, cpuRequest, `must not exceed cpuLimit (${cpuLimit})`);
    }
    return { cpuRequest, memoryRequest, cpuLimit: cpuLimit || undefined, memoryLimit };
}
