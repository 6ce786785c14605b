import assert from "node:assert/strict";
import * as fs from "node:fs";
import { describe, it } from "node:test";
import { OIDC_ISSUER, OIDC_PROVIDER_ARN } from "../scripts/mocks";
import { Evaluation, EvaluatedResource } from "../scripts/evaluate";
import { all, one, policyOf, stack, STACKS } from "./support/stacks";
import { backupMemoryMi } from "../components/backup";

const want = {
    dev: { schedule: "0 2 * * *", verify: "0 5 * * 1", retention: 7, sse: "AES256", lockDays: undefined as number | undefined, protect: false, scratch: "10Gi" },
    prod: { schedule: "0 1 * * *", verify: "0 4 * * 0", retention: 30, sse: "aws:kms", lockDays: 14 as number | undefined, protect: true, scratch: "200Gi" },
};

type Env = { name: string; value?: string; valueFrom?: { secretKeyRef: { name: string; key: string } } };

function podSpec(cron: EvaluatedResource) {
    return cron.inputs.spec.jobTemplate.spec.template.spec;
}
function envOf(cron: EvaluatedResource): Record<string, Env> {
    return Object.fromEntries((podSpec(cron).containers[0].env as Env[]).map((e) => [e.name, e]));
}
/** The bucket's ARN as the mocks report it (name plus a stable suffix). */
function bucketArn(ev: Evaluation, resourceName: string): string {
    one(ev, "aws:s3/bucket:Bucket", resourceName);
    const arn = ev.resources
        .filter((r) => r.type === "aws:s3/bucketPolicy:BucketPolicy" && r.parent === `platform:index:SecureBucket::${resourceName.replace(/-bucket$/, "")}`)
        .map((r) => policyOf(r).Statement[0].Resource[0] as string)[0];
    assert.match(arn, new RegExp(`^arn:aws:s3:::${resourceName}-[0-9a-f]{7}$`));
    return arn;
}

/** The KMS key the backup bucket encrypts with by default. */
function bucketKeyArn(ev: Evaluation): string {
    const sse = one(ev, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", "backup-store-encryption");
    return sse.inputs.rules[0].applyServerSideEncryptionByDefault.kmsMasterKeyId;
}

function bucketResources(ev: Evaluation, prefix: string) {
    return ev.resources.filter((r) => r.parent === `platform:index:SecureBucket::${prefix}`);
}

for (const name of STACKS) {
    const w = want[name];
    describe(`backup bucket (${name})`, () => {
        it("is versioned, encrypted, private, owner-enforced and TLS-only", async () => {
            const ev = await stack(name);
            const rs = bucketResources(ev, "backup-store");
            const byType = (t: string) => rs.filter((r) => r.type === t);
            const [bucket] = byType("aws:s3/bucket:Bucket");
            assert.equal(bucket.inputs.objectLockEnabled, w.lockDays !== undefined);
            assert.equal(bucket.inputs.forceDestroy, !w.protect);
            assert.equal(byType("aws:s3/bucketVersioning:BucketVersioning")[0].inputs.versioningConfiguration.status, "Enabled");
            const sse = byType("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")[0].inputs.rules[0];
            assert.equal(sse.applyServerSideEncryptionByDefault.sseAlgorithm, w.sse);
            if (w.sse === "aws:kms") {
                assert.match(sse.applyServerSideEncryptionByDefault.kmsMasterKeyId, /^arn:aws:kms:/);
                assert.equal(sse.bucketKeyEnabled, true);
                assert.equal(one(ev, "aws:kms/key:Key", "backup-store-key").inputs.enableKeyRotation, true);
            } else {
                assert.equal(all(ev, "aws:kms/key:Key").filter((k) => k.name === "backup-store-key").length, 0);
            }
            const pab = byType("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")[0].inputs;
            assert.deepEqual([pab.blockPublicAcls, pab.blockPublicPolicy, pab.ignorePublicAcls, pab.restrictPublicBuckets], [true, true, true, true]);
            assert.equal(byType("aws:s3/bucketOwnershipControls:BucketOwnershipControls")[0].inputs.rule.objectOwnership, "BucketOwnerEnforced");
            const policy = policyOf(byType("aws:s3/bucketPolicy:BucketPolicy")[0]);
            const arn = bucketArn(ev, "backup-store-bucket");
            assert.deepEqual(policy.Statement, [{
                Sid: "DenyInsecureTransport",
                Effect: "Deny",
                Principal: "*",
                Action: "s3:*",
                Resource: [arn, `${arn}/*`],
                Condition: { Bool: { "aws:SecureTransport": "false" } },
            }]);
        });

        it(`expires backups after ${w.retention} days, staging after 1, old versions and stale uploads`, async () => {
            const rules: any[] = bucketResources(await stack(name), "backup-store").find((r) => r.type === "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")!.inputs.rules;
            const byId = Object.fromEntries(rules.map((r) => [r.id, r]));
            assert.deepEqual(byId["expire-backups"].filter, { prefix: "postgres/runs/" });
            assert.equal(byId["expire-backups"].expiration.days, w.retention);
            assert.deepEqual(byId["expire-staging"].filter, { prefix: "postgres/.staging/" });
            assert.equal(byId["expire-staging"].expiration.days, 1);
            assert.equal(byId["expire-staging"].noncurrentVersionExpiration.noncurrentDays, 1);
            assert.equal(byId["noncurrent-versions"].noncurrentVersionExpiration.noncurrentDays, w.retention);
            assert.equal(byId["abort-incomplete-multipart-uploads"].abortIncompleteMultipartUpload.daysAfterInitiation, 1);
            for (const r of rules) assert.equal(r.status, "Enabled");
        });

        it(w.lockDays ? `locks versions for ${w.lockDays} days in governance mode` : "has no object lock", async () => {
            const locks = bucketResources(await stack(name), "backup-store").filter((r) => r.type === "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration");
            if (w.lockDays === undefined) return assert.equal(locks.length, 0);
            assert.deepEqual(locks[0].inputs.rule.defaultRetention, { mode: "GOVERNANCE", days: w.lockDays });
        });

        it(`${w.protect ? "survives" : "goes with"} pulumi destroy`, async () => {
            const ev = await stack(name);
            const bucket = one(ev, "aws:s3/bucket:Bucket", "backup-store-bucket");
            assert.equal(bucket.protect, w.protect);
            assert.equal(bucket.retainOnDelete, w.protect);
        });
    });

    describe(`backup IAM (${name})`, () => {
        for (const [role, sa] of [["backup-backup", "postgres-backup"], ["backup-restore", "postgres-restore"]]) {
            it(`${role} is trusted only by data/${sa}`, async () => {
                const trust = policyOf(one(await stack(name), "aws:iam/role:Role", `${role}-role`), "assumeRolePolicy");
                assert.equal(trust.Statement.length, 1);
                assert.equal(trust.Statement[0].Principal.Federated, OIDC_PROVIDER_ARN);
                assert.deepEqual(trust.Statement[0].Condition, {
                    StringEquals: { [`${OIDC_ISSUER}:sub`]: `system:serviceaccount:data:${sa}`, [`${OIDC_ISSUER}:aud`]: "sts.amazonaws.com" },
                });
            });
        }

        it("grants the backup role exactly what backup.sh does: write runs, move latest.json, delete its own failed runs", async () => {
            const ev = await stack(name);
            const arn = bucketArn(ev, "backup-store-bucket");
            const policy = policyOf(one(ev, "aws:iam/rolePolicy:RolePolicy", "backup-backup-inline"));
            const bySid = Object.fromEntries(policy.Statement.map((s: { Sid: string }) => [s.Sid, s]));
            for (const s of policy.Statement) {
                assert.equal(s.Effect, "Allow");
                for (const a of s.Action) assert.ok(!a.includes("*"), a);
            }
            assert.deepEqual(bySid.ListRuns.Action, ["s3:ListBucket"]);
            assert.deepEqual(bySid.ListRuns.Resource, [arn]);
            assert.deepEqual(bySid.WriteRuns.Action, ["s3:PutObject", "s3:AbortMultipartUpload"]);
            assert.deepEqual(bySid.WriteRuns.Resource, [`${arn}/postgres/runs/*`]);
            assert.deepEqual(bySid.MoveLatest.Action, ["s3:GetObject", "s3:PutObject"], "compare, then If-Match");
            assert.deepEqual(bySid.MoveLatest.Resource, [`${arn}/postgres/latest.json`]);
            assert.deepEqual(bySid.CleanUpFailedRuns.Action, ["s3:DeleteObject"]);
            assert.deepEqual(bySid.CleanUpFailedRuns.Resource, [`${arn}/postgres/runs/*`], "latest.json is never deleted");
            const actions = policy.Statement.flatMap((s: { Action: string[] }) => s.Action);
            assert.ok(!actions.includes("s3:DeleteObjectVersion") && !actions.includes("s3:BypassGovernanceRetention"), "versions stay");
            if (w.sse === "aws:kms") assert.deepEqual(bySid.UseBucketKey, { Sid: "UseBucketKey", Effect: "Allow", Action: ["kms:GenerateDataKey", "kms:Decrypt"], Resource: [bucketKeyArn(ev)] });
            else assert.equal(bySid.UseBucketKey, undefined);
            assert.equal(policy.Statement.length, w.sse === "aws:kms" ? 5 : 4);
        });

        it("grants the restore role read-only access", async () => {
            const policy = policyOf(one(await stack(name), "aws:iam/rolePolicy:RolePolicy", "backup-restore-inline"));
            const actions = policy.Statement.flatMap((s: { Action: string[] }) => s.Action).sort();
            assert.deepEqual(actions, (w.sse === "aws:kms" ? ["kms:Decrypt", "s3:GetObject", "s3:ListBucket"] : ["s3:GetObject", "s3:ListBucket"]));
        });
    });

    describe(`backup CronJobs (${name})`, () => {
        it("ships the repo's scripts in a ConfigMap", async () => {
            const cm = one(await stack(name), "kubernetes:core/v1:ConfigMap", "backup-scripts");
            for (const f of ["backup.sh", "restore.sh", "verify.sh"]) {
                assert.equal(cm.inputs.data[f], fs.readFileSync(`components/backup/scripts/${f}`, "utf8"), f);
            }
        });

        it("backs up on the configured schedule, one job at a time, with bounded retries and history", async () => {
            const cron = one(await stack(name), "kubernetes:batch/v1:CronJob", "backup-postgres-backup");
            const s = cron.inputs.spec;
            assert.equal(cron.inputs.metadata.name, "postgres-backup");
            assert.equal(cron.inputs.metadata.namespace, "data");
            assert.equal(s.schedule, w.schedule);
            assert.equal(s.timeZone, "Etc/UTC");
            assert.equal(s.concurrencyPolicy, "Forbid");
            assert.equal(s.suspend, false);
            assert.ok(s.startingDeadlineSeconds > 0);
            assert.ok(s.successfulJobsHistoryLimit >= 1 && s.failedJobsHistoryLimit >= 1);
            const job = s.jobTemplate.spec;
            assert.ok(job.backoffLimit >= 0 && job.activeDeadlineSeconds > 0 && job.ttlSecondsAfterFinished > 0);
            assert.equal(podSpec(cron).restartPolicy, "Never");
        });

        it("runs backup.sh in the server's postgres image with the AWS CLI from its pinned image, non-root", async () => {
            const cron = one(await stack(name), "kubernetes:batch/v1:CronJob", "backup-postgres-backup");
            const pod = podSpec(cron);
            const [c] = pod.containers;
            assert.equal(c.image, "public.ecr.aws/docker/library/postgres:17.6");
            assert.deepEqual(c.command, ["/opt/backup/backup.sh"]);
            assert.equal(pod.initContainers[0].image, "public.ecr.aws/aws-cli/aws-cli:2.31.23");
            // The copy lands where the main container mounts the same volume: /usr/local/aws-cli/v2/...
            assert.deepEqual(pod.initContainers[0].command, ["cp", "-R", "-P", "/usr/local/aws-cli/v2", "/aws-cli/"]);
            const mounts = (k: { volumeMounts: { name: string; mountPath: string }[] }) => Object.fromEntries(k.volumeMounts.map((m) => [m.name, m.mountPath]));
            assert.equal(mounts(pod.initContainers[0])["aws-cli"], "/aws-cli");
            assert.equal(mounts(c)["aws-cli"], "/usr/local/aws-cli");
            assert.match(envOf(cron).PATH.value!, /^\/usr\/local\/aws-cli\/v2\/current\/bin:\/usr\/lib\/postgresql\/17\/bin:/);
            assert.equal(pod.securityContext.runAsNonRoot, true);
            assert.equal(pod.securityContext.runAsUser, 999);
            for (const k of [...pod.containers, ...pod.initContainers]) {
                assert.equal(k.securityContext.allowPrivilegeEscalation, false);
                assert.equal(k.securityContext.readOnlyRootFilesystem, true);
                assert.ok(k.resources.requests.cpu && k.resources.requests.memory, k.name);
                assert.ok(!k.image.endsWith(":latest") && /:[0-9]/.test(k.image), k.image);
            }
            assert.equal(pod.serviceAccountName, "postgres-backup");
            // Sized from the database volume (dev 20Gi: 8 MiB chunks; prod 100Gi: the CLI doubles them to 16 MiB).
            assert.equal(c.resources.limits.memory, name === "prod" ? "320Mi" : "256Mi");
            assert.equal(c.resources.requests.memory, c.resources.limits.memory);
        });

        it("passes backup.sh its environment, credentials only from Secrets", async () => {
            const ev = await stack(name);
            const env = envOf(one(ev, "kubernetes:batch/v1:CronJob", "backup-postgres-backup"));
            assert.equal(env.PGHOST.value, "postgres-0.postgres-headless.data.svc.cluster.local");
            assert.equal(env.PGPORT.value, "5432");
            assert.equal(env.BACKUP_BUCKET.value, ev.outputs.backupBucket.value);
            assert.equal(env.BACKUP_PREFIX.value, "postgres");
            assert.equal(env.BACKUP_DATABASES.value, "mlflow mlflow_auth");
            assert.equal(env.BACKUP_SSE.value, w.sse);
            assert.equal(env.BACKUP_KMS_KEY_ID?.value, w.sse === "aws:kms" ? bucketKeyArn(ev) : undefined);
            assert.equal(env.AWS_REGION.value, "us-east-1");
            assert.equal(env.BACKUP_LOCK_TIMEOUT.value, "1min");
            assert.equal(env.BACKUP_STATEMENT_TIMEOUT.value, "2h");
            const backupSecret = all(ev, "kubernetes:core/v1:Secret").find((s) => s.name === "postgres-backup")!;
            assert.equal(env.PGUSER.valueFrom!.secretKeyRef.key, "username");
            assert.equal(env.PGPASSWORD.valueFrom!.secretKeyRef.key, "password");
            assert.match(env.PGPASSWORD.valueFrom!.secretKeyRef.name, /^postgres-backup-[0-9a-f]{8}$/);
            assert.equal(backupSecret.inputs.stringData.username, "backup");
        });

        it("keeps a suspended restore job for humans, with the superuser and a scratch volume", async () => {
            const cron = one(await stack(name), "kubernetes:batch/v1:CronJob", "backup-postgres-restore");
            assert.equal(cron.inputs.metadata.name, "postgres-restore");
            assert.equal(cron.inputs.spec.suspend, true);
            const pod = podSpec(cron);
            assert.deepEqual(pod.containers[0].command, ["/opt/backup/restore.sh"]);
            assert.equal(pod.serviceAccountName, "postgres-restore");
            const env = envOf(cron);
            assert.match(env.PGPASSWORD.valueFrom!.secretKeyRef.name, /^postgres-superuser-/);
            assert.equal(env.RESTORE_RUN_ID.value, "latest");
            assert.equal(env.RESTORE_SCRATCH_DIR.value, "/scratch");
            const scratch = pod.volumes.find((v: { name: string }) => v.name === "scratch");
            assert.equal(scratch.ephemeral.volumeClaimTemplate.spec.storageClassName, "gp2-csi-scratch", "the Delete class: the volume goes with the job");
            assert.equal(scratch.ephemeral.volumeClaimTemplate.spec.resources.requests.storage, w.scratch);
        });

        it("verifies the latest backup on its own schedule in a throwaway server", async () => {
            const cron = one(await stack(name), "kubernetes:batch/v1:CronJob", "backup-postgres-restore-verify");
            assert.equal(cron.inputs.spec.schedule, w.verify);
            assert.equal(cron.inputs.spec.suspend, false);
            const pod = podSpec(cron);
            assert.deepEqual(pod.containers[0].command, ["/opt/backup/verify.sh"]);
            const env = envOf(cron);
            assert.equal(env.VERIFY_DATA_DIR.value, "/scratch");
            assert.ok(pod.volumes.some((v: { name: string; ephemeral?: object }) => v.name === "scratch" && v.ephemeral));
            assert.match(env.PATH.value!, /\/usr\/lib\/postgresql\/17\/bin/, "initdb and pg_ctl for the throwaway server");
            assert.equal(env.PGPASSWORD, undefined, "verify never connects to the real database");
            assert.equal(env.PGHOST, undefined);
        });

        it("annotates the ServiceAccounts with their role ARNs", async () => {
            const ev = await stack(name);
            for (const [res, role] of [["backup-postgres-backup", "backup-backup-role"], ["backup-postgres-restore", "backup-restore-role"]]) {
                const sa = one(ev, "kubernetes:core/v1:ServiceAccount", res);
                assert.match(sa.inputs.metadata.annotations["eks.amazonaws.com/role-arn"], new RegExp(`^arn:aws:iam::123456789012:role/${role}-`));
                assert.equal(sa.inputs.automountServiceAccountToken, false);
            }
        });
    });
}

describe("backup memory limit", () => {
    it("stays flat while 8 MiB chunks fit 10,000 parts, then follows the CLI's doubled chunks", () => {
        const GiB = 1024 ** 3;
        assert.equal(backupMemoryMi(20 * GiB), 256);
        assert.equal(backupMemoryMi(70 * GiB), 256);   // estimate 77 GiB: still 8 MiB chunks
        assert.equal(backupMemoryMi(100 * GiB), 320);  // 16 MiB chunks
        assert.equal(backupMemoryMi(300 * GiB), 768);  // estimate 330 GiB: 64 MiB chunks
        assert.equal(backupMemoryMi(1024 * GiB), 1408); // 128 MiB chunks
    });
});
