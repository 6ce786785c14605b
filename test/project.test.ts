import assert from "node:assert/strict";
import * as fs from "node:fs";
import { describe, it } from "node:test";
import YAML from "yaml";

// The parts of Pulumi's project-file schema (sdk/go/common/workspace/project.json) that a typo here
// would break: the CLI refuses to load a Pulumi.yaml that does not match it.
const CONFIG_TYPES = ["string", "integer", "boolean", "array"];
const DECLARATION_KEYS = ["type", "items", "description", "secret", "default"];

describe("Pulumi project", () => {
    const project = YAML.parse(fs.readFileSync("Pulumi.yaml", "utf8"));

    it("is a TypeScript nodejs project reading stack files from stacks/", () => {
        assert.equal(project.name, "mlflow-platform");
        assert.deepEqual(project.runtime, { name: "nodejs", options: { typescript: true } });
        assert.equal(project.stackConfigDir, "stacks");
        for (const stack of ["dev", "prod"]) assert.ok(fs.existsSync(`stacks/Pulumi.${stack}.yaml`), stack);
    });

    it("declares config only with the types Pulumi accepts", () => {
        for (const [key, decl] of Object.entries<Record<string, unknown>>(project.config ?? {})) {
            if (typeof decl !== "object") continue;
            assert.ok(CONFIG_TYPES.includes(String(decl.type)), `${key}: type ${decl.type} is not one of ${CONFIG_TYPES}`);
            for (const k of Object.keys(decl)) assert.ok(DECLARATION_KEYS.includes(k), `${key}: unknown field ${k}`);
        }
    });

    it("keeps no secure: value in a committed stack file", () => {
        for (const f of fs.readdirSync("stacks")) assert.doesNotMatch(fs.readFileSync(`stacks/${f}`, "utf8"), /secure:/, f);
    });
});
