import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as path from "path";
import { quantityBytes } from "../config";
import { PrefixExpiration } from "./secureBucket";
import { shellScripts } from "./assets";
import { AWS_CLI_DIR, bucketJobAccount, DatabaseJobsArgs, scriptCronJob, ScriptCronJobArgs, scratchVolume } from "./scriptJobs";

/** Logical backups: the dumps go to `bucket` (a BackupStore, built before the database). */
export interface BackupArgs extends DatabaseJobsArgs {
    postgresMajorVersion: number;
    /** Secret (username, password) of the read-only backup role. */
    backupSecretName: pulumi.Input<string>;
    /** Secret (username, password) of the superuser, for restores. */
    superuserSecretName: pulumi.Input<string>;
    schedule: string;
    databases: string[];
    /** The database volume's size (a quantity): the backup container's memory is sized from it. */
    databaseStorageSize: string;
    /** PostgreSQL durations for every session the scripts open (README "Backups"). */
    lockTimeout: string;
    statementTimeout: string;
}

/** Key prefix of everything the scripts write; the IAM policies are scoped to it. */
export const BACKUP_PREFIX = "postgres";
export const BACKUP_SERVICE_ACCOUNT = "postgres-backup";
export const RESTORE_SERVICE_ACCOUNT = "postgres-restore";
/** Pods that connect to PostgreSQL: the database's NetworkPolicy admits these labels. */
export const BACKUP_POD_LABELS = { "app.kubernetes.io/name": "postgres-backup", "app.kubernetes.io/component": "backup" };
/** A backup Job's time budget: the backup-age alert allows the schedule's interval plus this. */
export const BACKUP_JOB_DEADLINE_SECONDS = 6 * 3600;
export const RESTORE_POD_LABELS = { "app.kubernetes.io/name": "postgres-backup", "app.kubernetes.io/component": "restore" };
const VERIFY_POD_LABELS = { "app.kubernetes.io/name": "postgres-backup", "app.kubernetes.io/component": "verify" };

const SCRIPTS_DIR = path.join(__dirname, "backup", "scripts");
const SCRIPTS_MOUNT = "/opt/backup";
// The aws-cli image's installation, copied by an init container into a volume mounted at the same
// path, so its absolute symlinks resolve: the AWS CLI runs in the postgres image, nothing installed.

/** The bucket's lifecycle rules for what the logical backup jobs write. */
export function logicalBackupExpirations(retentionDays: number): PrefixExpiration[] {
    return [
        { id: "expire-backups", prefix: `${BACKUP_PREFIX}/runs/`, days: retentionDays },
        // Backups before v2 staged their uploads here; kept so a stack upgraded mid-run still
        // expires what such a run left. Nothing writes here any more.
        { id: "expire-staging", prefix: `${BACKUP_PREFIX}/.staging/`, days: 1, noncurrentDays: 1 },
    ];
}

const MiB = 1024 * 1024;
/**
 * The backup container's memory limit in MiB, for a database that fills its volume. `aws s3 cp -`
 * holds up to ~10 multipart chunks of the stream: 8 MiB each (lib.sh), doubled by the CLI while
 * backup.sh's size estimate (database size + 10% + 64 MiB) needs more than 10,000 parts. Measured
 * (README "Backup benchmark", /usr/bin/time -v): the CLI peaks at ~54 MB + 10 chunks; pg_dump,
 * psql, tee and sha256sum add well under 64 MiB.
 */
export function backupMemoryMi(storageBytes: number): number {
    const expected = storageBytes * 1.1 + 64 * MiB;
    let chunk = 8 * MiB;
    while (expected / chunk > 10_000) chunk *= 2;
    const need = 128 * MiB + 10 * chunk;
    return Math.max(256, Math.ceil(need / MiB / 64) * 64);
}

/** Every script the pods run, read from the repo: the same files the tests execute. */
export function backupScripts(): Record<string, string> {
    return shellScripts(SCRIPTS_DIR);
}

/**
 * The backup role's policy: exactly what backup.sh does. It writes each object once under its own
 * run prefix (the first write, If-None-Match, claims the prefix), lists the run to check sizes,
 * writes the manifest, reads and conditionally replaces latest.json, and deletes the objects of its
 * own failed run. Nothing is ever read back or copied.
 */
export function backupPolicy(bucketArn: string, kmsKeyArn?: string): string {
    const statements: object[] = [
        // The LIST that checks a run's objects before its manifest (and, with a CLI that has no
        // conditional writes, checks that the run prefix is free). ListObjectsV2 is a bucket
        // action; the bucket holds nothing but backups.
        { Sid: "ListRuns", Effect: "Allow", Action: ["s3:ListBucket"], Resource: [bucketArn] },
        // Dumps, globals and the manifest; AbortMultipartUpload: the CLI aborts a failed stream's upload.
        { Sid: "WriteRuns", Effect: "Allow", Action: ["s3:PutObject", "s3:AbortMultipartUpload"], Resource: [`${bucketArn}/${BACKUP_PREFIX}/runs/*`] },
        // Read to compare snapshot times, then replaced with If-Match (PutObject covers the condition).
        { Sid: "MoveLatest", Effect: "Allow", Action: ["s3:GetObject", "s3:PutObject"], Resource: [`${bucketArn}/${BACKUP_PREFIX}/latest.json`] },
        // A failed run deletes what it wrote (never latest.json). Versioning keeps every deleted
        // version (and Object Lock, where on, keeps them undeletable).
        { Sid: "CleanUpFailedRuns", Effect: "Allow", Action: ["s3:DeleteObject"], Resource: [`${bucketArn}/${BACKUP_PREFIX}/runs/*`] },
    ];
    // Decrypt: reading latest.json and completing multipart uploads under SSE-KMS.
    if (kmsKeyArn) statements.push({ Sid: "UseBucketKey", Effect: "Allow", Action: ["kms:GenerateDataKey", "kms:Decrypt"], Resource: [kmsKeyArn] });
    return JSON.stringify({ Version: "2012-10-17", Statement: statements });
}

/** The restore role's policy: read-only. */
export function restorePolicy(bucketArn: string, kmsKeyArn?: string): string {
    const statements: object[] = [
        { Sid: "ListBackupPrefix", Effect: "Allow", Action: ["s3:ListBucket"], Resource: [bucketArn], Condition: { StringLike: { "s3:prefix": [`${BACKUP_PREFIX}/*`] } } },
        { Sid: "ReadBackups", Effect: "Allow", Action: ["s3:GetObject"], Resource: [`${bucketArn}/${BACKUP_PREFIX}/*`] },
    ];
    if (kmsKeyArn) statements.push({ Sid: "UseBucketKey", Effect: "Allow", Action: ["kms:Decrypt"], Resource: [kmsKeyArn] });
    return JSON.stringify({ Version: "2012-10-17", Statement: statements });
}

/**
 * Nightly pg_dump of PostgreSQL streamed to the backup bucket, a suspended restore job for
 * humans to run, and a scheduled job that proves the latest backup restores.
 */
export class Backup extends pulumi.ComponentResource {
    public readonly bucketName: pulumi.Output<string>;
    public readonly backupRoleArn: pulumi.Output<string>;
    public readonly restoreRoleArn: pulumi.Output<string>;
    public readonly backupCronJobName: pulumi.Output<string>;
    public readonly restoreCronJobName: pulumi.Output<string>;
    public readonly verifyCronJobName: pulumi.Output<string>;

    constructor(name: string, args: BackupArgs, opts?: pulumi.ComponentResourceOptions) {
        super("platform:index:Backup", name, {}, opts);

        const bucket = args.bucket;
        const account = (suffix: string, saName: string, policy: (b: string, k?: string) => string) =>
            bucketJobAccount(this, args, { role: `${name}-${suffix}`, serviceAccount: `${name}-${saName}` }, saName, policy);
        const { role: backupRole, serviceAccount: backupSa } = account("backup", BACKUP_SERVICE_ACCOUNT, backupPolicy);
        const { role: restoreRole, serviceAccount: restoreSa } = account("restore", RESTORE_SERVICE_ACCOUNT, restorePolicy);

        const scripts = new k8s.core.v1.ConfigMap(`${name}-scripts`, {
            metadata: { namespace: args.namespace },
            data: backupScripts(),
        }, { parent: this });

        const secretEnv = (envName: string, secretName: pulumi.Input<string>, key: string) => ({
            name: envName,
            valueFrom: { secretKeyRef: { name: secretName, key } },
        });
        const commonEnv = [
            { name: "BACKUP_BUCKET", value: bucket.bucketName },
            { name: "BACKUP_PREFIX", value: BACKUP_PREFIX },
            { name: "BACKUP_LOCK_TIMEOUT", value: args.lockTimeout },
            { name: "BACKUP_STATEMENT_TIMEOUT", value: args.statementTimeout },
            { name: "AWS_REGION", value: args.region },
            { name: "AWS_PAGER", value: "" },
            // The root filesystem is read-only; the AWS CLI and psql keep their state under HOME.
            { name: "HOME", value: "/tmp" },
            { name: "PATH", value: `${AWS_CLI_DIR}/v2/current/bin:/usr/lib/postgresql/${args.postgresMajorVersion}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin` },
        ];
        const serverEnv = [
            { name: "PGHOST", value: args.postgresHost },
            { name: "PGPORT", value: pulumi.output(args.postgresPort).apply(String) },
            { name: "PGCONNECT_TIMEOUT", value: "30" },
        ];

        const cronJob = (spec: Omit<ScriptCronJobArgs, "namespace" | "timeZone" | "image" | "awsCliImageTag" | "scriptsConfigMap" | "scriptsMount" | "backoffLimit"> & { scratch: boolean }) =>
            scriptCronJob(`${name}-${spec.cronName}`, {
                ...spec,
                namespace: args.namespace,
                timeZone: args.timeZone,
                image: args.postgresImage,
                awsCliImageTag: args.awsCliImageTag,
                scriptsConfigMap: scripts.metadata.name,
                scriptsMount: SCRIPTS_MOUNT,
                // One retry: a transient network error is likelier than a repeatable failure.
                backoffLimit: 1,
                env: [...commonEnv, ...spec.env],
                volumes: spec.scratch ? [scratchVolume(args.scratchStorageClassName, args.scratchSize)] : [],
                volumeMounts: spec.scratch ? [{ name: "scratch", mountPath: "/scratch" }] : [],
            }, { parent: this, dependsOn: [scripts] });

        const sse = [
            { name: "BACKUP_SSE", value: args.encryption },
            ...(bucket.kmsKeyArn ? [{ name: "BACKUP_KMS_KEY_ID", value: bucket.kmsKeyArn }] : []),
        ];
        const backupJob = cronJob({
            cronName: "postgres-backup",
            labels: BACKUP_POD_LABELS,
            schedule: args.schedule,
            suspend: false,
            serviceAccountName: backupSa.metadata.name,
            script: "backup.sh",
            env: [
                ...serverEnv,
                secretEnv("PGUSER", args.backupSecretName, "username"),
                secretEnv("PGPASSWORD", args.backupSecretName, "password"),
                { name: "BACKUP_DATABASES", value: args.databases.join(" ") },
                ...sse,
            ],
            scratch: false,
            memory: `${backupMemoryMi(quantityBytes(args.databaseStorageSize))}Mi`,
            activeDeadlineSeconds: BACKUP_JOB_DEADLINE_SECONDS,
        });

        // Suspended: it never runs on its own. The schedule is required by the API and never used.
        const restoreJob = cronJob({
            cronName: "postgres-restore",
            labels: RESTORE_POD_LABELS,
            schedule: "0 0 1 1 *",
            suspend: true,
            serviceAccountName: restoreSa.metadata.name,
            script: "restore.sh",
            env: [
                ...serverEnv,
                secretEnv("PGUSER", args.superuserSecretName, "username"),
                secretEnv("PGPASSWORD", args.superuserSecretName, "password"),
                { name: "RESTORE_RUN_ID", value: "latest" },
                { name: "RESTORE_DATABASE", value: "mlflow" },
                { name: "RESTORE_TARGET_DATABASE", value: "mlflow" },
                { name: "RESTORE_SCRATCH_DIR", value: "/scratch" },
            ],
            scratch: true,
            memory: "512Mi",
            activeDeadlineSeconds: 12 * 3600,
        });

        const verifyJob = cronJob({
            cronName: "postgres-restore-verify",
            labels: VERIFY_POD_LABELS,
            schedule: args.verifySchedule,
            suspend: args.verifySuspended,
            serviceAccountName: restoreSa.metadata.name,
            script: "verify.sh",
            env: [
                { name: "RESTORE_RUN_ID", value: "latest" },
                // The throwaway server's data and the downloaded dumps both go to the scratch volume.
                { name: "VERIFY_DATA_DIR", value: "/scratch" },
            ],
            scratch: true,
            memory: "1Gi",
            activeDeadlineSeconds: 12 * 3600,
        });

        this.bucketName = bucket.bucketName;
        this.backupRoleArn = backupRole.roleArn;
        this.restoreRoleArn = restoreRole.roleArn;
        this.backupCronJobName = backupJob.metadata.name;
        this.restoreCronJobName = restoreJob.metadata.name;
        this.verifyCronJobName = verifyJob.metadata.name;
        this.registerOutputs({
            bucketName: this.bucketName,
            backupRoleArn: this.backupRoleArn,
            restoreRoleArn: this.restoreRoleArn,
            backupCronJobName: this.backupCronJobName,
            restoreCronJobName: this.restoreCronJobName,
            verifyCronJobName: this.verifyCronJobName,
        });
    }
}
