// Shared access to the program evaluated under mocks, one evaluation per stack per test process.
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { EvaluatedResource, Evaluation, evaluateStack } from "../../scripts/evaluate";

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
    for (const rel of ["index.ts", "config.ts", "components", "stacks", "scripts/mocks.ts", "scripts/evaluate-child.ts", "package-lock.json"]) walk(rel);
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

/** The program evaluated for a stack file, optionally with some config keys replaced. */
export function stack(name: StackName, overrides: Record<string, unknown> = {}): Promise<Evaluation> {
    const id = `${name} ${JSON.stringify(overrides)}`;
    let ev = cache.get(id);
    if (!ev) {
        ev = evaluateCached(name, overrides);
        cache.set(id, ev);
    }
    return ev;
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

/** Kubernetes objects as the API server would receive them (auto-names filled in as Pulumi does). */
export function kubernetesObjects(ev: Evaluation): EvaluatedResource[] {
    return ev.resources.filter((r) => r.type.startsWith("kubernetes:") && r.type !== "kubernetes:helm.sh/v3:Release");
}

export function policyOf(r: EvaluatedResource, key = "policy"): any {
    return JSON.parse(r.inputs[key]);
}
