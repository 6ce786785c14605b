// Day-2 safety: what a later `pulumi up` or `pulumi destroy` does to data that already exists.
// Claims are tested by evaluating the program twice and comparing what it registers.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { all, clusterProviderRef, one, stack, STACKS } from "./support/stacks";

/** Every ephemeral volume claim template in a Kubernetes object, wherever its pod spec sits. */
function ephemeralClaims(v: unknown, at: string, out: { at: string; spec: any }[] = []): { at: string; spec: any }[] {
    if (Array.isArray(v)) v.forEach((x, i) => ephemeralClaims(x, `${at}[${i}]`, out));
    else if (v && typeof v === "object") {
        for (const [k, x] of Object.entries(v)) {
            if (k === "ephemeral") out.push({ at: `${at}.${k}`, spec: (x as any).volumeClaimTemplate.spec });
            else ephemeralClaims(x, `${at}.${k}`, out);
        }
    }
    return out;
}

for (const name of STACKS) {
    describe(`scratch volumes (${name})`, () => {
        it("every ephemeral claim names a StorageClass that deletes its volume with the claim", async () => {
            const ev = await stack(name);
            const classes = new Map(all(ev, "kubernetes:storage.k8s.io/v1:StorageClass").map((c) => [c.inputs.metadata.name as string, c]));
            const claims = ev.resources.filter((r) => r.type.startsWith("kubernetes:")).flatMap((r) => ephemeralClaims(r.inputs, r.name));
            assert.ok(claims.length >= 2, "the restore and verify jobs have scratch volumes");
            for (const c of claims) {
                // Without a class name the default class applies, which is Retain in prod.
                const sc = classes.get(c.spec.storageClassName);
                assert.ok(sc, `${c.at}: StorageClass ${c.spec.storageClassName} is one of ours`);
                assert.equal(sc.inputs.reclaimPolicy, "Delete", `${c.at} uses ${sc.inputs.metadata.name}`);
            }
        });

        it("the scratch class is encrypted, binds in the pod's zone and is never the default", async () => {
            const ev = await stack(name);
            const scratch = one(ev, "kubernetes:storage.k8s.io/v1:StorageClass", "storage-scratch");
            const platform = one(ev, "kubernetes:storage.k8s.io/v1:StorageClass", "storage-class");
            assert.equal(platform.inputs.reclaimPolicy, name === "prod" ? "Retain" : "Delete");
            assert.equal(scratch.inputs.metadata.name, "gp2-csi-scratch");
            assert.equal(scratch.inputs.provisioner, "ebs.csi.aws.com");
            assert.equal(scratch.inputs.parameters.encrypted, "true");
            assert.deepEqual(scratch.inputs.parameters, platform.inputs.parameters, "same volume type, encryption and key");
            assert.equal(scratch.inputs.volumeBindingMode, "WaitForFirstConsumer");
            assert.equal(scratch.inputs.metadata.annotations["storageclass.kubernetes.io/is-default-class"], "false");
            assert.equal(scratch.provider, clusterProviderRef(ev));
        });
    });

    describe(`retained buckets (${name})`, () => {
        it(name === "prod"
            ? "everything that hardens a retained bucket is retained and protected with it"
            : "nothing is retained, so dev's destroy removes buckets with their settings", async () => {
            const ev = await stack(name);
            const buckets = all(ev, "aws:s3/bucket:Bucket");
            assert.ok(buckets.length >= 2);
            for (const b of buckets) {
                assert.equal(b.retainOnDelete, name === "prod", b.name);
                // The bucket's component siblings and anything else configuring the bucket by its id.
                const hardening = ev.resources.filter((r) => r !== b && r.custom && (r.parent === b.parent || r.inputs.bucket === b.outputs.id));
                const types = new Set(hardening.map((r) => r.type));
                for (const t of ["aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "aws:s3/bucketPolicy:BucketPolicy", "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"]) {
                    assert.ok(types.has(t), `${b.name}: ${t}`);
                }
                for (const r of hardening) {
                    assert.deepEqual({ retainOnDelete: r.retainOnDelete, protect: r.protect }, { retainOnDelete: b.retainOnDelete, protect: b.protect }, `${r.type} ${r.name}`);
                }
            }
            if (name === "prod") {
                assert.ok(ev.resources.some((r) => r.type === "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration" && r.retainOnDelete && r.protect));
            }
        });
    });
}
