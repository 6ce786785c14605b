import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { validateK8sObject } from "./support/k8sSchema";
import { kubernetesObjects, stack, STACKS } from "./support/stacks";

describe("Kubernetes API schema", () => {
    it("rejects an object that breaks the schema (the validator is live)", () => {
        assert.throws(() => validateK8sObject({ apiVersion: "apps/v1", kind: "StatefulSet", metadata: { name: "x" }, spec: { serviceName: 5, selector: {}, template: {} } } as never), /serviceName must be string/);
        assert.throws(() => validateK8sObject({ apiVersion: "batch/v1", kind: "CronJob", metadata: { name: "x" }, spec: { schedule: "* * * * *" } } as never), /jobTemplate/);
    });

    for (const name of STACKS) {
        it(`accepts every Kubernetes object of ${name}`, async () => {
            const objects = kubernetesObjects(await stack(name));
            const kinds = new Set(objects.map((o) => o.inputs.kind));
            for (const kind of ["Namespace", "StorageClass", "StatefulSet", "Service", "ConfigMap", "Secret", "NetworkPolicy", "CronJob", "ServiceAccount"]) {
                assert.ok(kinds.has(kind), `no ${kind} rendered`);
            }
            for (const o of objects) {
                // Pulumi fills in auto-names before it applies an object; the schema requires one.
                const obj = { ...o.inputs, apiVersion: o.inputs.apiVersion as string, kind: o.inputs.kind as string, metadata: { name: `${o.name}-abcd1234`, ...o.inputs.metadata } };
                assert.doesNotThrow(() => validateK8sObject(obj), `${o.inputs.kind} ${o.name}`);
            }
        });
    }
});
