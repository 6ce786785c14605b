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
