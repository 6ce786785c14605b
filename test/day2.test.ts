// Day-2 safety: what a later `pulumi up` or `pulumi destroy` does to data that already exists.
// Claims are tested by evaluating the program twice and comparing what it registers.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { all, stack, STACKS } from "./support/stacks";

for (const name of STACKS) {
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
