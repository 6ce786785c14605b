import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { one, stack, STACKS } from "./support/stacks";

for (const name of STACKS) {
    describe(`backup store (${name})`, () => {
        it("owns the backup bucket, outside the jobs' component, so the database pod can use it", async () => {
            const ev = await stack(name);
            const bucket = one(ev, "platform:index:SecureBucket", "backup-store");
            assert.equal(bucket.parent, "platform:index:BackupStore::backup");
            assert.equal(ev.outputs.backupBucket.value, one(ev, "aws:s3/bucket:Bucket", "backup-store-bucket").outputs.bucket);
        });

        it("keeps the bucket's state from before the move (alias to its former parent): no replacement on a live stack", async () => {
            const ev = await stack(name);
            const bucket = one(ev, "platform:index:SecureBucket", "backup-store");
            // The engine derives the former URN (and those of all children) from this parent URN:
            // urn:...::platform:index:Backup$platform:index:SecureBucket::backup-store.
            assert.deepEqual(bucket.aliases, [{ parent: `urn:pulumi:${name}::mlflow-platform::platform:index:Backup::backup` }]);
        });
    });
}
