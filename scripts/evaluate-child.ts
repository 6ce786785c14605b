// Evaluates the Pulumi program for one stack under mocks, in a process of its own (the program is
// a module with side effects: it runs once per process), and writes what it recorded as JSON.
// Usage: tsx scripts/evaluate-child.ts <stack> <out.json>   (EVAL_CONFIG_OVERRIDES: JSON of key -> value|null;
// a key may name a field inside a section, "mlflow-platform:cluster.nodeDesiredSize", like `pulumi config set --path`)
import * as pulumi from "@pulumi/pulumi";
import * as fs from "fs";
import * as path from "path";
import YAML from "yaml";
import { RecordingMocks } from "./mocks";

const PROJECT = "mlflow-platform";
const root = path.join(__dirname, "..");

interface OptionsRecord {
    type: string;
    name: string;
    parent?: string;
    protect: boolean;
    retainOnDelete: boolean;
    ignoreChanges: string[];
    replaceOnChanges: string[];
    deleteBeforeReplace: boolean;
    dependsOn: string[];
    /** As given: URNs or alias objects, possibly Outputs; resolved after the program ran. */
    aliases: unknown[];
}

/** An alias with every Output inside resolved, e.g. { parent: "urn:pulumi:..." }. */
async function resolveAlias(a: unknown): Promise<unknown> {
    const value = async (v: unknown): Promise<unknown> =>
        pulumi.Output.isInstance(v) ? new Promise((r) => (v as pulumi.Output<unknown>).apply(r)) : v;
    const plain = await value(a);
    if (plain === null || typeof plain !== "object") return plain;
    return Object.fromEntries(await Promise.all(Object.entries(plain).map(async ([k, v]) => [k, await value(v)])));
}

function describe(r: unknown): string {
    const res = r as { __pulumiType?: string; __name?: string };
    return `${res.__pulumiType}::${res.__name}`;
}

/** An override written `{ "$secret": value }` is set as a secret, as `pulumi config set --secret` does. */
const SECRET_OVERRIDE = "$secret";

function isSecretOverride(v: unknown): v is { [SECRET_OVERRIDE]: unknown } {
    return v !== null && typeof v === "object" && SECRET_OVERRIDE in v;
}

/** Stack file values as the Pulumi CLI hands them to the program: strings, objects as JSON. */
function stackConfig(stack: string, overrides: Record<string, unknown>): Record<string, string> {
    const file = path.join(root, "stacks", `Pulumi.${stack}.yaml`);
    const doc = YAML.parse(fs.readFileSync(file, "utf8")) as { config?: Record<string, unknown> };
    const merged: Record<string, unknown> = { ...(doc.config ?? {}) };
    for (const [k, v] of Object.entries(overrides)) {
        const [key, ...fieldPath] = k.split(".");
        if (fieldPath.length === 0) {
            if (v === null) delete merged[key];
            else merged[key] = isSecretOverride(v) ? v[SECRET_OVERRIDE] : v;
            continue;
        }
        const root = structuredClone((merged[key] ?? {}) as Record<string, unknown>);
        let obj = root;
        for (const f of fieldPath.slice(0, -1)) obj = (obj[f] ??= {}) as Record<string, unknown>;
        const last = fieldPath[fieldPath.length - 1];
        if (v === null) delete obj[last];
        else obj[last] = v;
        merged[key] = root;
    }
    return Object.fromEntries(Object.entries(merged).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]));
}

async function main(): Promise<void> {
    const [stack, outFile] = process.argv.slice(2);
    const overrides = JSON.parse(process.env.EVAL_CONFIG_OVERRIDES ?? "{}") as Record<string, unknown>;
    const mocks = new RecordingMocks();
    const secretKeys = Object.entries(overrides).filter(([, v]) => isSecretOverride(v)).map(([k]) => k);
    pulumi.runtime.setAllConfig(stackConfig(stack, overrides), secretKeys);
    await pulumi.runtime.setMocks(mocks, PROJECT, stack, false);

    const options: OptionsRecord[] = [];
    let exportsOf: Record<string, unknown> = {};
    await pulumi.runtime.runInPulumiStack(async () => {
        pulumi.runtime.registerStackTransformation((args) => {
            const o = args.opts as pulumi.CustomResourceOptions;
            options.push({
                type: args.type,
                name: args.name,
                parent: o.parent ? describe(o.parent) : undefined,
                protect: o.protect === true,
                retainOnDelete: o.retainOnDelete === true,
                ignoreChanges: o.ignoreChanges ?? [],
                replaceOnChanges: o.replaceOnChanges ?? [],
                deleteBeforeReplace: o.deleteBeforeReplace === true,
                dependsOn: ([] as unknown[]).concat(o.dependsOn ?? []).map(describe),
                aliases: o.aliases ?? [],
            });
            return undefined;
        });
        exportsOf = await import(path.join(root, "index.ts"));
        return undefined;
    });

    const outputs: Record<string, { value: unknown; secret: boolean }> = {};
    for (const [k, v] of Object.entries(exportsOf)) {
        if (!pulumi.Output.isInstance(v)) continue;
        const value = await new Promise((resolve) => (v as pulumi.Output<unknown>).apply(resolve));
        // isSecret is internal to Output but stable: it is how the engine knows to encrypt a value.
        outputs[k] = { value, secret: await (v as unknown as { isSecret: Promise<boolean> }).isSecret };
    }
    // Resources created inside apply() register after the outputs resolve: wait until none arrive.
    let seen = -1;
    while (seen !== mocks.resources.length) {
        seen = mocks.resources.length;
        await new Promise((r) => setTimeout(r, 100));
    }

    const resources = await Promise.all(mocks.resources.map(async (r) => {
        const o = options.find((x) => x.type === r.type && x.name === r.name);
        const aliases = await Promise.all((o?.aliases ?? []).map(resolveAlias));
        return { ...r, parent: o?.parent, protect: o?.protect ?? false, retainOnDelete: o?.retainOnDelete ?? false, ignoreChanges: o?.ignoreChanges ?? [], replaceOnChanges: o?.replaceOnChanges ?? [], deleteBeforeReplace: o?.deleteBeforeReplace ?? false, dependsOn: o?.dependsOn ?? [], aliases };
    }));
    fs.writeFileSync(outFile, JSON.stringify({ stack, resources, calls: mocks.calls, outputs }, null, 1));
}

main().then(
    () => process.exit(0),
    (err: unknown) => {
        // The program's own config errors are RunErrors: print the message alone, as the CLI does.
        const message = pulumi.RunError.isInstance(err) ? (err as Error).message : err instanceof Error ? err.stack ?? err.message : String(err);
        process.stderr.write(`${message}\n`);
        process.exit(1);
    },
);
