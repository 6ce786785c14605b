// Offline view of what a stack would deploy: every Kubernetes object as YAML, the Helm release's
// chart and values, and the resource tree with each AWS resource's key inputs.
// Usage: npm run render -- <stack> [outDir]     (default outDir: out/<stack>)
import * as fs from "fs";
import * as path from "path";
import YAML from "yaml";
import { EvaluatedResource, Evaluation, EvaluationError, evaluateStack } from "./evaluate";

const REDACTED = "<secret: generated at deploy time, kept in Pulumi state>";

/** Sorts object keys recursively so the output does not depend on insertion order. */
function sortKeys(v: unknown): unknown {
    if (Array.isArray(v)) return v.map(sortKeys);
    if (v === null || typeof v !== "object") return v;
    return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys((v as Record<string, unknown>)[k])]));
}

function redact(r: EvaluatedResource): Record<string, unknown> {
    const copy = JSON.parse(JSON.stringify(r.inputs)) as Record<string, any>;
    for (const p of r.secretPaths) {
        const parts = p.split(".");
        let node: any = copy;
        for (const part of parts.slice(0, -1)) node = node?.[part];
        const last = parts[parts.length - 1];
        if (node && last in node) {
            const v = node[last];
            node[last] = v && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.keys(v).map((k) => [k, REDACTED])) : REDACTED;
        }
    }
    return copy;
}

function yaml(v: unknown): string {
    return YAML.stringify(sortKeys(v), { lineWidth: 0 });
}

function fileName(...parts: string[]): string {
    return parts.join(".").toLowerCase().replace(/[^a-z0-9.-]+/g, "-") + ".yaml";
}

function prettyJsonStrings(v: unknown): unknown {
    if (Array.isArray(v)) return v.map(prettyJsonStrings);
    if (typeof v === "string" && /^\s*\{/.test(v)) {
        try {
            return sortKeys(JSON.parse(v));
        } catch {
            return v;
        }
    }
    if (v === null || typeof v !== "object") return v;
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, prettyJsonStrings(x)]));
}

/** Renders an evaluation into files (relative path -> content). Deterministic. */
export function render(ev: Evaluation): Map<string, string> {
    const files = new Map<string, string>();
    for (const r of ev.resources) {
        if (r.type === "kubernetes:helm.sh/v3:Release") {
            const { values, ...release } = redact(r);
            files.set(`manifests/${fileName("helmrelease", String(release.namespace), String(release.name))}`, yaml({ release, values }));
        } else if (r.type.startsWith("kubernetes:")) {
            const obj = redact(r) as { kind: string; metadata: Record<string, unknown> };
            // Pulumi auto-names objects without a fixed name: <resource name>-<random suffix>.
            obj.metadata = { ...obj.metadata, name: obj.metadata.name ?? r.outputs.metadata?.name };
            files.set(`manifests/${fileName(obj.kind, String(obj.metadata.namespace ?? "cluster"), String(obj.metadata.name))}`, yaml(obj));
        }
    }

    // The tree: children under parents, siblings by type then name.
    const key = (r: EvaluatedResource) => `${r.type}::${r.name}`;
    const children = new Map<string, EvaluatedResource[]>();
    for (const r of ev.resources) {
        const parent = r.parent ?? (r.type === "pulumi:pulumi:Stack" ? "" : `pulumi:pulumi:Stack::mlflow-platform-${ev.stack}`);
        children.set(parent, [...(children.get(parent) ?? []), r]);
    }
    const lines: string[] = [];
    const walk = (parent: string, depth: number): void => {
        const kids = (children.get(parent) ?? []).sort((a, b) => key(a).localeCompare(key(b)));
        for (const r of kids) {
            const flags = [r.protect && "protect", r.retainOnDelete && "retainOnDelete"].filter(Boolean).join(", ");
            lines.push(`${"  ".repeat(depth)}${r.type} ${r.name}${flags ? ` [${flags}]` : ""}`);
            if (r.type.startsWith("aws:") || r.type.startsWith("eks:") || r.type.startsWith("random:")) {
                const inputs = yaml(prettyJsonStrings(redact(r))).trimEnd();
                if (inputs !== "{}") lines.push(...inputs.split("\n").map((l) => `${"  ".repeat(depth + 2)}${l}`));
            }
            walk(key(r), depth + 1);
        }
    };
    walk("", 0);
    files.set("resources.txt", lines.join("\n") + "\n");
    return files;
}

export function writeRender(files: Map<string, string>, outDir: string): void {
    fs.rmSync(outDir, { recursive: true, force: true });
    for (const [rel, content] of files) {
        fs.mkdirSync(path.dirname(path.join(outDir, rel)), { recursive: true });
        fs.writeFileSync(path.join(outDir, rel), content);
    }
}

/** How many resources of each type an evaluation creates. */
function countByType(ev: Evaluation): Map<string, number> {
    const counts = new Map<string, number>();
    for (const r of ev.resources) counts.set(r.type, (counts.get(r.type) ?? 0) + 1);
    return counts;
}

export function countsByType(ev: Evaluation): string {
    const rows = [...countByType(ev)].sort(([a], [b]) => a.localeCompare(b));
    const width = Math.max(...rows.map(([t]) => t.length));
    return rows.map(([t, n]) => `${t.padEnd(width)}  ${n}`).join("\n") + `\n${"total".padEnd(width)}  ${ev.resources.length}\n`;
}

/** The README's table of resource counts per type for several stacks. */
export function countsTable(evs: Evaluation[]): string {
    const counts = evs.map(countByType);
    const types = [...new Set(counts.flatMap((m) => [...m.keys()]))].sort();
    const rows = types.map((t) => `| \`${t}\` | ${counts.map((m) => m.get(t) ?? 0).join(" | ")} |`);
    const total = `| total | ${evs.map((ev) => ev.resources.length).join(" | ")} |`;
    return [`| resource type | ${evs.map((ev) => ev.stack).join(" | ")} |`, `|---|${evs.map(() => "---:").join("|")}|`, ...rows, total].join("\n");
}

export const COUNTS_START = "<!-- resource-counts:start -->";
export const COUNTS_END = "<!-- resource-counts:end -->";

/** Replaces the text between the README's markers. */
export function withCounts(readme: string, table: string): string {
    const start = readme.indexOf(COUNTS_START);
    const end = readme.indexOf(COUNTS_END);
    if (start < 0 || end < start) throw new Error(`README.md lacks the ${COUNTS_START} ... ${COUNTS_END} markers`);
    return `${readme.slice(0, start + COUNTS_START.length)}\n${table}\n${readme.slice(end)}`;
}

async function main(): Promise<void> {
    const [stack, outArg] = process.argv.slice(2);
    if (!stack) throw new EvaluationError("usage: npm run render -- <stack> [outDir]   (stacks: files in stacks/)");
    if (!fs.existsSync(path.join(__dirname, "..", "stacks", `Pulumi.${stack}.yaml`))) {
        throw new EvaluationError(`no stack file stacks/Pulumi.${stack}.yaml`);
    }
    const ev = await evaluateStack(stack);
    const outDir = outArg ?? path.join("out", stack);
    writeRender(render(ev), outDir);
    process.stdout.write(`${countsByType(ev)}rendered ${stack} into ${outDir}\n`);
}

if (require.main === module) {
    main().catch((err: Error) => {
        process.stderr.write(`${err instanceof EvaluationError ? err.message : err.stack}\n`);
        process.exit(1);
    });
}
