// Continuous archiving and point-in-time recovery as the program registers them (mocks): the
// database pod's archive settings and put-only role, the base backup / restore / verify jobs, the
// replication role, the retention rules, and what a config change does on a live stack.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { extraRolesSql } from "../components/databaseRoles";
import { walScripts } from "../components/walArchive";
import { validateConfig } from "../config";
import { EvaluatedResource } from "../scripts/evaluate";
import { all, one, policyOf, stack, STACKS } from "./support/stacks";

const want = {
    dev: { base: "30 1 * * 0", verify: "0 5 * * 1", baseDays: 7 + 7 + 1, kms: false },
    prod: { base: "30 2 * * *", verify: "0 4 * * 0", baseDays: 14 + 1 + 1, kms: true },
};

const podSpec = (cron: EvaluatedResource) => cron.inputs.spec.jobTemplate.spec.template.spec;
const envOf = (c: { env: { name: string; value?: string; valueFrom?: unknown }[] }) => Object.fromEntries(c.env.map((e) => [e.name, e]));
const actions = (doc: any) => doc.Statement.filter((s: any) => s.Effect === "Allow").flatMap((s: any) => s.Action as string[]);

for (const name of STACKS) {
    const w = want[name];
    describe(`WAL archiving and PITR (${name})`, () => {
        it("the database pod archives every WAL file through archive-wal.sh, with archive_timeout and the pod's pg_hba.conf", async () => {
            const ev = await stack(name);
            const conf: string = one(ev, "kubernetes:core/v1:ConfigMap", "postgres-config").inputs.data["postgresql.conf"];
            assert.match(conf, /^archive_mode = on$/m);
            assert.match(conf, /^archive_command = '\/opt\/wal\/archive-wal\.sh %p %f'$/m);
            assert.match(conf, /^archive_timeout = 60s$/m);
            assert.match(conf, /^hba_file = '\/opt\/wal\/pg_hba\.conf'$/m);
            const scripts = one(ev, "kubernetes:core/v1:ConfigMap", "wal-scripts");
            assert.equal(scripts.inputs.metadata.name, "postgres-wal-scripts");
            assert.deepEqual(scripts.inputs.data, walScripts());
            assert.match(scripts.inputs.data["pg_hba.conf"], /^host +replication +replicator +all +scram-sha-256$/m);
            assert.doesNotMatch(scripts.inputs.data["pg_hba.conf"], /^host.*trust$/m, "no password-less TCP, not even loopback");

            const sts = one(ev, "kubernetes:apps/v1:StatefulSet", "postgres-statefulset");
            const pod = sts.inputs.spec.template.spec;
            const pg = pod.containers.find((c: any) => c.name === "postgres");
            const env = envOf(pg);
            assert.equal(env.WAL_PREFIX.value, "wal");
            assert.equal(env.WAL_SSE.value, w.kms ? "aws:kms" : "AES256");
            assert.equal(env.WAL_KMS_KEY_ID !== undefined, w.kms);
            assert.match(env.WAL_BUCKET.value ?? "", /^backup-store-bucket-/);
            assert.deepEqual(pg.volumeMounts.filter((m: any) => m.name.startsWith("wal-")).map((m: any) => [m.mountPath, m.readOnly]), [["/opt/wal", true], ["/usr/local/aws-cli", true]]);
            assert.match(pod.initContainers.find((c: any) => c.name === "aws-cli").image, /^public\.ecr\.aws\/aws-cli\/aws-cli:2\.\d+\.\d+$/);
            const arm = pod.containers.find((c: any) => c.name === "wal-arm");
            assert.deepEqual(arm.command, ["/opt/wal/arm-archive-timeout.sh"]);
            assert.equal(arm.image, pg.image);
            assert.equal(arm.securityContext.readOnlyRootFilesystem, true);
            // The pod's ServiceAccount and scripts exist before the StatefulSet creates the pod.
            assert.equal(pod.serviceAccountName, "postgres");
            assert.ok(sts.dependsOn.includes("kubernetes:core/v1:ServiceAccount::wal-sa"));
            assert.ok(sts.dependsOn.includes("kubernetes:core/v1:ConfigMap::wal-scripts"));
        });

        it("the pod's IRSA role may put and read WAL files only: no delete, nothing outside wal/", async () => {
            const ev = await stack(name);
            const sa = one(ev, "kubernetes:core/v1:ServiceAccount", "wal-sa");
            const role = one(ev, "aws:iam/role:Role", "wal-pod-role");
            assert.equal(sa.inputs.metadata.annotations["eks.amazonaws.com/role-arn"], role.outputs.arn);
            const trust = policyOf(role, "assumeRolePolicy");
            assert.match(JSON.stringify(trust), /system:serviceaccount:data:postgres"/);
            const doc = policyOf(one(ev, "aws:iam/rolePolicy:RolePolicy", "wal-pod-inline"));
            assert.ok(!actions(doc).some((a: string) => /Delete|\*/.test(a)), JSON.stringify(doc));
            const put = doc.Statement.find((s: any) => s.Action.includes("s3:PutObject"));
            assert.deepEqual(put.Resource.map((r: string) => r.replace(/^arn:aws:s3:::[^/]+/, "")), ["/wal/*"]);
            assert.equal(doc.Statement.some((s: any) => s.Sid === "UseBucketKey"), w.kms);
        });

        it("base backups run on schedule as the replication role; restore and verify are read-only", async () => {
            const ev = await stack(name);
            const base = one(ev, "kubernetes:batch/v1:CronJob", "pitr-postgres-basebackup");
            assert.equal(base.inputs.spec.schedule, w.base);
            assert.equal(base.inputs.spec.concurrencyPolicy, "Forbid");
            const c = podSpec(base).containers[0];
            assert.deepEqual(c.command, ["/opt/wal/base-backup.sh"]);
            const env = envOf(c);
            assert.deepEqual(env.PGUSER.valueFrom, { secretKeyRef: { name: "postgres-role-replicator", key: "username" } });
            assert.deepEqual(env.PGPASSWORD.valueFrom, { secretKeyRef: { name: "postgres-role-replicator", key: "password" } });
            assert.match(env.PGHOST.value ?? "", /^postgres-0\.postgres-headless\.data\.svc\.cluster\.local$/);
            const baseDoc = policyOf(one(ev, "aws:iam/rolePolicy:RolePolicy", "pitr-basebackup-inline"));
            assert.ok(!actions(baseDoc).some((a: string) => /Delete|\*/.test(a)));
            const writes = baseDoc.Statement.filter((s: any) => s.Action.includes("s3:PutObject")).flatMap((s: any) => s.Resource);
            assert.deepEqual(writes.map((r: string) => r.replace(/^arn:aws:s3:::[^/]+/, "")), ["/basebackups/*"]);
            const readDoc = policyOf(one(ev, "aws:iam/rolePolicy:RolePolicy", "pitr-restore-inline"));
            assert.deepEqual([...new Set(actions(readDoc))].sort(), w.kms ? ["kms:Decrypt", "s3:GetObject", "s3:ListBucket"] : ["s3:GetObject", "s3:ListBucket"]);

            // The role: REPLICATION and CONNECT to postgres, nothing else, on new and existing databases.
            const rolesSql = all(ev, "kubernetes:core/v1:ConfigMap").map((r) => r.inputs.data?.["roles.sql"]).find((x) => typeof x === "string");
            assert.ok(rolesSql?.includes(extraRolesSql([{ name: "replicator", replication: true, connect: ["postgres"] }]).split("\n").filter((l) => l.includes("replicator"))[0]), "the reconcile Job's SQL declares the replicator role");
        });

        it("restores are suspended jobs (throwaway, and in place on the StatefulSet's claim); the verify runs weekly", async () => {
            const ev = await stack(name);
            const restore = one(ev, "kubernetes:batch/v1:CronJob", "pitr-postgres-pitr-restore");
            assert.equal(restore.inputs.spec.suspend, true);
            assert.equal(envOf(podSpec(restore).containers[0]).RESTORE_MODE.value, "throwaway");
            assert.equal(envOf(podSpec(restore).containers[0]).RESTORE_TARGET_TIME.value, "latest");
            const inPlace = one(ev, "kubernetes:batch/v1:CronJob", "pitr-postgres-pitr-restore-in-place");
            assert.equal(inPlace.inputs.spec.suspend, true);
            assert.equal(envOf(podSpec(inPlace).containers[0]).RESTORE_MODE.value, "in-place");
            assert.deepEqual(podSpec(inPlace).volumes.find((v: any) => v.name === "data").persistentVolumeClaim, { claimName: "data-postgres-0" });
            assert.equal(envOf(podSpec(inPlace).containers[0]).RESTORE_DATA_DIR.value, "/var/lib/postgresql/data/pgdata");
            const verify = one(ev, "kubernetes:batch/v1:CronJob", "pitr-postgres-pitr-verify");
            assert.equal(verify.inputs.spec.schedule, w.verify);
            assert.deepEqual(podSpec(verify).containers[0].command, ["/opt/wal/pitr-verify.sh"]);
            const maxAge = Number(envOf(podSpec(verify).containers[0]).VERIFY_MAX_BASE_BACKUP_AGE_HOURS.value);
            assert.equal(maxAge, name === "dev" ? 7 * 24 + 24 : 24 + 24);
            for (const cron of [restore, inPlace, verify]) {
                assert.equal(podSpec(cron).serviceAccountName, "postgres-pitr");
                assert.equal(podSpec(cron).securityContext.runAsUser, 999);
            }
        });

        it("keeps base backups for the recovery window plus one schedule gap, and WAL a day longer", async () => {
            const ev = await stack(name);
            const rules: any[] = one(ev, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "backup-store-lifecycle").inputs.rules;
            const base = rules.find((r) => r.id === "expire-base-backups");
            const wal = rules.find((r) => r.id === "expire-wal");
            assert.deepEqual([base.filter.prefix, base.expiration.days], ["basebackups/", w.baseDays]);
            assert.deepEqual([wal.filter.prefix, wal.expiration.days], ["wal/", w.baseDays + 1]);
            // The logical backups' rules are untouched.
            assert.ok(rules.some((r) => r.id === "expire-backups"));
        });
    });
}

describe("PITR configuration", () => {
    it("defaults archive_timeout to 60 s and validates the new keys", () => {
        const ok = validateConfig("dev", { region: "us-east-1" } as never);
        assert.equal(ok.backup.archiveTimeoutSeconds, 60);
        assert.throws(() => validateConfig("dev", { region: "us-east-1", backup: { archiveTimeoutSeconds: 5 } } as never), /backup\.archiveTimeoutSeconds: 5 is not a whole number from 10 to 3600/);
        assert.throws(() => validateConfig("dev", { region: "us-east-1", backup: { recoveryWindowDays: 0 } } as never), /backup\.recoveryWindowDays: 0/);
        assert.throws(() => validateConfig("dev", { region: "us-east-1", backup: { baseBackupSchedule: "0 0 1 1 *" } } as never), /backup\.baseBackupSchedule: "0 0 1 1 \*" runs less often than every 31 days/);
    });

    it("a longer archive_timeout on a live stack changes the settings (the pod rolls), nothing is replaced", async () => {
        const before = await stack("dev");
        const after = await stack("dev", { "mlflow-platform:backup": { ...devBackup(), archiveTimeoutSeconds: 300 } });
        const conf = (ev: typeof before) => one(ev, "kubernetes:core/v1:ConfigMap", "postgres-config").inputs.data["postgresql.conf"] as string;
        assert.match(conf(after), /^archive_timeout = 300s$/m);
        const sha = (ev: typeof before) => one(ev, "kubernetes:apps/v1:StatefulSet", "postgres-statefulset").inputs.spec.template.metadata.annotations["platform/config-sha256"];
        assert.notEqual(sha(after), sha(before));
        const names = (ev: typeof before) => ev.resources.map((r) => `${r.type}::${r.name}`).sort();
        assert.deepEqual(names(after), names(before));
        assert.deepEqual(one(after, "aws:s3/bucket:Bucket", "backup-store-bucket").inputs, one(before, "aws:s3/bucket:Bucket", "backup-store-bucket").inputs);
    });

    it("the WAL-archiving-behind alert follows archive_timeout (15 of them), so a slower archive pace does not page", async () => {
        const behind = (ev: EvaluatedResource[] | any) => {
            const rule = all(ev, "kubernetes:monitoring.coreos.com/v1:PrometheusRule")[0];
            const rules = rule.inputs.spec.groups.flatMap((g: any) => g.rules);
            return rules.find((r: any) => r.alert === "PostgresWalArchivingBehind").expr as string;
        };
        assert.match(behind(await stack("dev")), /pg_stat_archiver_last_archive_age\{[^}]*\}\) > 900\)/);
        const slow = await stack("dev", { "mlflow-platform:backup": { ...devBackup(), archiveTimeoutSeconds: 300 } });
        assert.match(behind(slow), /pg_stat_archiver_last_archive_age\{[^}]*\}\) > 4500\)/);
        assert.match(behind(slow), /\[75m\]/);
    });
});

function devBackup(): Record<string, unknown> {
    const YAML = require("yaml");
    const fs = require("node:fs");
    return YAML.parse(fs.readFileSync("stacks/Pulumi.dev.yaml", "utf8")).config["mlflow-platform:backup"];
}
