// Runs scripts/evaluate-child.ts for a stack and returns what the program would create.
import { execFile } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import type { RecordedResource } from "./mocks";

/** A resource as the mocks recorded it, with the options the program gave it. */
export interface EvaluatedResource extends RecordedResource {
    /** `<type>::<name>` of the parent resource. */
    parent?: string;
    protect: boolean;
    retainOnDelete: boolean;
    ignoreChanges: string[];
    replaceOnChanges: string[];
    deleteBeforeReplace: boolean;
    dependsOn: string[];
    /** Former identities (URNs, or objects such as { parent: <urn> }) that keep state on a move. */
    aliases: unknown[];
}

export interface Evaluation {
    stack: string;
    resources: EvaluatedResource[];
    calls: { token: string; inputs: Record<string, any> }[];
    outputs: Record<string, { value: any; secret: boolean }>;
}

export class EvaluationError extends Error {}

const root = path.join(__dirname, "..");

/**
 * What an operator must add to a committed stack file before it deploys (the README's prod
 * section says so), as stand-ins for evaluating the stack offline. prod ships no
 * cluster.publicAccessCidrs because only the operator knows the VPN's egress range; this one
 * (RFC 2544's benchmarking block) stands for it.
 */
export const OPERATOR_SETTINGS: Record<string, Record<string, unknown>> = {
    prod: { "mlflow-platform:cluster.publicAccessCidrs": ["198.18.0.0/15"] },
};

/** The stack as operators deploy it: committed file, operator settings, then the given overrides. */
export function withOperatorSettings(stack: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
    return { ...(OPERATOR_SETTINGS[stack] ?? {}), ...overrides };
}

export function evaluateStack(stack: string, overrides: Record<string, unknown> = {}): Promise<Evaluation> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pulumi-eval-"));
    const out = path.join(dir, "evaluation.json");
    return new Promise((resolve, reject) => {
        execFile(process.execPath, ["--import", "tsx", path.join(root, "scripts", "evaluate-child.ts"), stack, out], {
            cwd: root,
            env: { ...process.env, EVAL_CONFIG_OVERRIDES: JSON.stringify(overrides), PULUMI_CONFIG_PASSPHRASE: "" },
            maxBuffer: 64 * 1024 * 1024,
        }, (err, _stdout, stderr) => {
            try {
                if (err) reject(new EvaluationError(stderr.trim() || err.message));
                else resolve(JSON.parse(fs.readFileSync(out, "utf8")) as Evaluation);
            } finally {
                fs.rmSync(dir, { recursive: true, force: true });
            }
        });
    });
}
