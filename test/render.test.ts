import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import YAML from "yaml";
import { evaluateStack, EvaluationError } from "../scripts/evaluate";
import { COUNTS_END, COUNTS_START, countsTable, render } from "../scripts/render";
import { stack, STACKS } from "./support/stacks";

const run = promisify(execFile);
const SNAPSHOTS = path.join(__dirname, "snapshots");

function readTree(dir: string): Map<string, string> {
    const files = new Map<string, string>();
    const walk = (rel: string): void => {
        for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
            const r = path.join(rel, e.name);
            if (e.isDirectory()) walk(r);
            else files.set(r.split(path.sep).join("/"), fs.readFileSync(path.join(dir, r), "utf8"));
        }
    };
    if (fs.existsSync(dir)) walk("");
    return files;
}

describe("render snapshots", () => {
    for (const name of STACKS) {
        it(`${name} renders exactly the committed snapshot (refresh with npm run render:update)`, async () => {
            const rendered = render(await stack(name));
            const committed = readTree(path.join(SNAPSHOTS, name));
            assert.deepEqual([...rendered.keys()].sort(), [...committed.keys()].sort(), "the set of rendered files changed");
            for (const [file, content] of rendered) assert.equal(content, committed.get(file), `test/snapshots/${name}/${file} differs`);
        });
    }

    it("is deterministic: two evaluations yield identical inputs (no perpetual diff in pulumi preview)", async () => {
        const [a, b] = [await evaluateStack("dev"), await evaluateStack("dev")];
        const inputs = (ev: typeof a) => JSON.stringify(ev.resources.map((r) => [r.type, r.name, r.inputs]).sort());
        assert.equal(inputs(a), inputs(b));
        assert.deepEqual(render(a), render(b));
    });

    it("never writes a generated secret into the render", async () => {
        const ev = await stack("prod");
        const secrets = ev.resources.filter((r) => r.type === "random:index/randomPassword:RandomPassword").map((r) => r.outputs.result as string);
        assert.ok(secrets.length >= 4);
        const all = [...render(ev).values()].join("\n");
        for (const s of secrets) assert.ok(!all.includes(s));
    });
});

describe("README", () => {
    it("lists the resources each stack creates, as the program creates them", async () => {
        const readme = fs.readFileSync(path.join(__dirname, "..", "README.md"), "utf8");
        const block = readme.slice(readme.indexOf(COUNTS_START) + COUNTS_START.length, readme.indexOf(COUNTS_END)).trim();
        assert.equal(block, countsTable([await stack("dev"), await stack("prod")]), "run npm run render:update");
    });

    it("its restore runbook's kubectl set env step works on the rendered restore job", { skip: hasKubectl() ? false : "kubectl is not installed" }, async () => {
        const cron = YAML.parse(render(await stack("prod")).get("manifests/cronjob.data.postgres-restore.yaml")!);
        const job = { apiVersion: "batch/v1", kind: "Job", metadata: { name: "restore-copy", namespace: "data" }, spec: cron.spec.jobTemplate.spec };
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "job-"));
        try {
            fs.writeFileSync(path.join(dir, "job.yaml"), YAML.stringify(job));
            const { stdout } = await run("kubectl", ["set", "env", "--local", "-f", path.join(dir, "job.yaml"), "-c", "postgres-restore", "RESTORE_RUN_ID=20261122T010203Z", "RESTORE_TARGET_DATABASE=mlflow_copy", "-o", "yaml"]);
            const env = YAML.parse(stdout).spec.template.spec.containers[0].env as { name: string; value?: string }[];
            assert.equal(env.find((e) => e.name === "RESTORE_RUN_ID")?.value, "20261122T010203Z");
            assert.equal(env.find((e) => e.name === "RESTORE_TARGET_DATABASE")?.value, "mlflow_copy");
            assert.equal(env.filter((e) => e.name === "RESTORE_RUN_ID").length, 1);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });
});

function hasKubectl(): boolean {
    return (process.env.PATH ?? "").split(path.delimiter).some((d) => fs.existsSync(path.join(d, "kubectl")));
}

describe("npm run render", () => {
    it("writes manifests and the resource tree for a stack and prints counts per type", async () => {
        const out = fs.mkdtempSync(path.join(os.tmpdir(), "render-"));
        try {
            const { stdout } = await run(process.execPath, ["--import", "tsx", "scripts/render.ts", "dev", out]);
            assert.match(stdout, /^kubernetes:apps\/v1:StatefulSet\s+1$/m);
            assert.match(stdout, /^aws:ec2\/subnet:Subnet\s+4$/m);
            assert.match(stdout, /^total\s+\d+$/m);
            assert.ok(fs.existsSync(path.join(out, "manifests", "statefulset.data.postgres.yaml")));
            assert.ok(fs.existsSync(path.join(out, "manifests", "helmrelease.mlflow.mlflow.yaml")));
            assert.match(fs.readFileSync(path.join(out, "resources.txt"), "utf8"), /^  platform:index:Cluster mlflow-dev$/m);
        } finally {
            fs.rmSync(out, { recursive: true, force: true });
        }
    });

    it("exits non-zero with the configuration error on invalid config", async () => {
        await assert.rejects(
            evaluateStack("dev", { "mlflow-platform:postgres": { storageSize: "20GB" }, "mlflow-platform:backup": { retentionDays: 0 } }),
            (err: Error) => {
                assert.ok(err instanceof EvaluationError);
                assert.match(err.message, /Invalid configuration for stack "dev"/);
                assert.match(err.message, /postgres\.storageSize: "20GB" is not a Kubernetes quantity \(e\.g\. 20Gi\)/);
                assert.match(err.message, /backup\.retentionDays: 0 is not a whole number from 1 to 3650/);
                assert.doesNotMatch(err.message, /at .*\.ts:\d+/, "a message, not a stack trace");
                return true;
            },
        );
        await assert.rejects(run(process.execPath, ["--import", "tsx", "scripts/render.ts", "nosuchstack"]), /no stack file stacks\/Pulumi\.nosuchstack\.yaml/);
    });
});
