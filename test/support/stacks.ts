// Shared access to the program evaluated under mocks, one evaluation per stack per test process.
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { EvaluatedResource, Evaluation, evaluateStack, withOperatorSettings } from "../../scripts/evaluate";

export const STACKS = ["dev", "prod"] as const;
export type StackName = (typeof STACKS)[number];

const cache = new Map<string, Promise<Evaluation>>();
const root = path.join(__dirname, "..", "..");

/** Hash of everything an evaluation depends on: test files share one evaluation per content. */
function sourceHash(): string {
    const h = crypto.createHash("sha256");
    const walk = (rel: string): void => {
        const abs = path.join(root, rel);
        if (fs.statSync(abs).isDirectory()) {
            for (const entry of fs.readdirSync(abs).sort()) walk(path.join(rel, entry));
        } else {
            h.update(rel).update(fs.readFileSync(abs));
        }
    };
    for (const rel of ["index.ts", "config", "components", "stacks", "scripts/mocks.ts", "scripts/evaluate.ts", "scripts/evaluate-child.ts", "package-lock.json"]) walk(rel);
    return h.digest("hex").slice(0, 16);
}

async function evaluateCached(name: StackName, overrides: Record<string, unknown>): Promise<Evaluation> {
    const key = crypto.createHash("sha256").update(JSON.stringify(overrides)).digest("hex").slice(0, 8);
    const file = path.join(os.tmpdir(), `mlflow-platform-eval-${sourceHash()}-${name}-${key}.json`);
    if (fs.existsSync(file)) return JSON.parse(fs.readFileSync(file, "utf8")) as Evaluation;
    const ev = await evaluateStack(name, overrides);
    const tmp = `${file}.${process.pid}`;
    fs.writeFileSync(tmp, JSON.stringify(ev));
    fs.renameSync(tmp, file);
    return ev;
}

/**
 * The program evaluated for a stack file plus the settings its operator must add (OPERATOR_SETTINGS),
 * optionally with some config keys replaced ("mlflow-platform:cluster.nodeDesiredSize": 4 replaces
 * one field of a section; null removes a key).
 */
export function stack(name: StackName, overrides: Record<string, unknown> = {}): Promise<Evaluation> {
    const settings = withOperatorSettings(name, overrides);
    const id = `${name} ${JSON.stringify(settings)}`;
    let ev = cache.get(id);
    if (!ev) {
        ev = evaluateCached(name, settings);
        cache.set(id, ev);
    }
    return ev;
}

/** Leaf paths (a.b[0].c) where two values differ. */
export function differingPaths(a: unknown, b: unknown, at = ""): string[] {
    const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object";
    if (!isObj(a) || !isObj(b) || Array.isArray(a) !== Array.isArray(b)) return JSON.stringify(a) === JSON.stringify(b) ? [] : [at];
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    return keys.flatMap((k) => differingPaths(a[k], b[k], Array.isArray(a) ? `${at}[${k}]` : at ? `${at}.${k}` : k));
}

const OPTIONS = ["parent", "provider", "protect", "retainOnDelete", "ignoreChanges", "replaceOnChanges", "deleteBeforeReplace", "dependsOn", "aliases"] as const;

/** What a second `pulumi up` with other config would do to each resource, as far as the program decides it. */
export interface StackChanges {
    added: string[];
    removed: string[];
    /** `<type>::<name>` -> the input paths and resource options that differ. */
    changed: Map<string, { inputs: string[]; options: string[] }>;
}

/** Compares two evaluations of the program (before and after a config change), resource options included. */
export function changesBetween(before: Evaluation, after: Evaluation): StackChanges {
    const key = (r: EvaluatedResource) => `${r.type}::${r.name}`;
    const old = new Map(before.resources.map((r) => [key(r), r]));
    const now = new Map(after.resources.map((r) => [key(r), r]));
    const changed = new Map<string, { inputs: string[]; options: string[] }>();
    for (const [k, a] of now) {
        const b = old.get(k);
        if (!b) continue;
        const inputs = differingPaths(b.inputs, a.inputs);
        const options = OPTIONS.filter((o) => JSON.stringify(b[o]) !== JSON.stringify(a[o]));
        if (inputs.length > 0 || options.length > 0) changed.set(k, { inputs, options });
    }
    return {
        added: [...now.keys()].filter((k) => !old.has(k)),
        removed: [...old.keys()].filter((k) => !now.has(k)),
        changed,
    };
}

export function all(ev: Evaluation, type: string): EvaluatedResource[] {
    return ev.resources.filter((r) => r.type === type);
}

export function one(ev: Evaluation, type: string, name: string): EvaluatedResource {
    const found = ev.resources.filter((r) => r.type === type && r.name === name);
    if (found.length !== 1) {
        const names = all(ev, type).map((r) => r.name).join(", ");
        throw new Error(`expected one ${type} named ${name}, found ${found.length} (have: ${names})`);
    }
    return found[0];
}

/** The `<urn>::<id>` reference Kubernetes resources must carry: the cluster component's provider. */
export function clusterProviderRef(ev: Evaluation): string {
    const providers = all(ev, "pulumi:providers:kubernetes");
    if (providers.length !== 1) throw new Error(`expected one Kubernetes provider, found ${providers.length}`);
    const p = providers[0];
    return `urn:pulumi:${ev.stack}::mlflow-platform::platform:index:Cluster$pulumi:providers:kubernetes::${p.name}::${p.name}-id`;
}

/** API groups whose kinds are custom resources (validated against their CRDs, not the Kubernetes API). */
const CUSTOM_RESOURCE_GROUPS = ["monitoring.coreos.com"];

function isCustomResource(r: EvaluatedResource): boolean {
    return CUSTOM_RESOURCE_GROUPS.some((g) => r.type.startsWith(`kubernetes:${g}/`));
}

/** Kubernetes objects as the API server would receive them (auto-names filled in as Pulumi does). */
export function kubernetesObjects(ev: Evaluation): EvaluatedResource[] {
    return ev.resources.filter((r) => r.type.startsWith("kubernetes:") && r.type !== "kubernetes:helm.sh/v3:Release" && !isCustomResource(r));
}

/** Custom resources (PodMonitor, ServiceMonitor, PrometheusRule). */
export function customResources(ev: Evaluation): EvaluatedResource[] {
    return ev.resources.filter(isCustomResource);
}

export function policyOf(r: EvaluatedResource, key = "policy"): any {
    return JSON.parse(r.inputs[key]);
}
