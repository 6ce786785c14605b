import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { cronMaxIntervalSeconds } from "../config/cron";
import { DATA_CLAIM_NAME, roleSecretName } from "./postgres";
import {
    archiveEnv, BASE_BACKUP_PREFIX, REPLICATION_ROLE, WAL_PREFIX, WAL_SCRIPTS_CONFIGMAP, WAL_SCRIPTS_MOUNT,
} from "./walArchive";
import { bucketJobAccount, DatabaseJobsArgs, scriptCronJob, ScriptCronJobArgs, scratchVolume } from "./scriptJobs";

export const BASE_BACKUP_SERVICE_ACCOUNT = "postgres-basebackup";
export const PITR_SERVICE_ACCOUNT = "postgres-pitr";
/** Pods that connect to PostgreSQL (pg_basebackup, the verify's markers): the database's NetworkPolicy admits these labels. */
export const BASE_BACKUP_POD_LABELS = { "app.kubernetes.io/name": "postgres-pitr", "app.kubernetes.io/component": "base-backup" };
export const PITR_VERIFY_POD_LABELS = { "app.kubernetes.io/name": "postgres-pitr", "app.kubernetes.io/component": "verify" };
const PITR_RESTORE_POD_LABELS = { "app.kubernetes.io/name": "postgres-pitr", "app.kubernetes.io/component": "restore" };
const DATA_MOUNT = "/var/lib/postgresql/data";

/**
 * The base backup role: write base backups, read them back, check the WAL they end in is archived.
 * ListBucket unconditioned for the same reason as the archive's (a missing key must read as 404).
 */
export function baseBackupPolicy(bucketArn: string, kmsKeyArn?: string): string {
    return JSON.stringify({
        Version: "2012-10-17",
        Statement: [
            { Sid: "FindObjects", Effect: "Allow", Action: ["s3:ListBucket"], Resource: [bucketArn] },
            { Sid: "WriteBaseBackups", Effect: "Allow", Action: ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"], Resource: [`${bucketArn}/${BASE_BACKUP_PREFIX}/*`] },
            { Sid: "CheckWal", Effect: "Allow", Action: ["s3:GetObject"], Resource: [`${bucketArn}/${WAL_PREFIX}/*`] },
            ...(kmsKeyArn ? [{ Sid: "UseBucketKey", Effect: "Allow", Action: ["kms:GenerateDataKey", "kms:Decrypt"], Resource: [kmsKeyArn] }] : []),
        ],
    });
}

/**
 * The restore and verify role: read-only. ListBucket unconditioned: restore-wal.sh must see a 404
 * for the end of the archive (a 403 would abort the recovery).
 */
export function pitrRestorePolicy(bucketArn: string, kmsKeyArn?: string): string {
    return JSON.stringify({
        Version: "2012-10-17",
        Statement: [
            { Sid: "FindObjects", Effect: "Allow", Action: ["s3:ListBucket"], Resource: [bucketArn] },
            { Sid: "ReadRecoveryData", Effect: "Allow", Action: ["s3:GetObject"], Resource: [`${bucketArn}/${BASE_BACKUP_PREFIX}/*`, `${bucketArn}/${WAL_PREFIX}/*`] },
            ...(kmsKeyArn ? [{ Sid: "UseBucketKey", Effect: "Allow", Action: ["kms:Decrypt"], Resource: [kmsKeyArn] }] : []),
        ],
    });
}

export interface PointInTimeRecoveryArgs extends DatabaseJobsArgs {
    baseBackupSchedule: string;
}

/**
 * Base backups on a schedule, the point-in-time restore jobs (throwaway and in place, suspended:
 * run by hand from the README's runbook) and the weekly proof that a restore to a recent time works.
 */
export class PointInTimeRecovery extends pulumi.ComponentResource {
    public readonly baseBackupCronJobName: pulumi.Output<string>;
    public readonly restoreCronJobName: pulumi.Output<string>;
    public readonly restoreInPlaceCronJobName: pulumi.Output<string>;
    public readonly verifyCronJobName: pulumi.Output<string>;

    constructor(name: string, args: PointInTimeRecoveryArgs, opts?: pulumi.ComponentResourceOptions) {
        super("platform:index:PointInTimeRecovery", name, {}, opts);

        const account = (suffix: string, saName: string, policy: (b: string, k?: string) => string) =>
            bucketJobAccount(this, args, { role: `${name}-${suffix}`, serviceAccount: `${name}-${suffix}` }, saName, policy).serviceAccount;
        const baseBackupSa = account("basebackup", BASE_BACKUP_SERVICE_ACCOUNT, baseBackupPolicy);
        const pitrSa = account("restore", PITR_SERVICE_ACCOUNT, pitrRestorePolicy);

        const replication = roleSecretName(REPLICATION_ROLE);
        const secretEnv = (envName: string, key: string) => ({ name: envName, valueFrom: { secretKeyRef: { name: replication, key } } });
        const serverEnv = [
            { name: "PGHOST", value: args.postgresHost },
            { name: "PGPORT", value: pulumi.output(args.postgresPort).apply(String) },
            { name: "PGCONNECT_TIMEOUT", value: "30" },
            secretEnv("PGUSER", "username"),
            secretEnv("PGPASSWORD", "password"),
        ];
        const scratch = scratchVolume(args.scratchStorageClassName, args.scratchSize);

        const cronJob = (spec: Omit<ScriptCronJobArgs, "namespace" | "timeZone" | "image" | "awsCliImageTag" | "scriptsConfigMap" | "scriptsMount" | "backoffLimit" | "serviceAccountName"> & { serviceAccount: k8s.core.v1.ServiceAccount }) =>
            scriptCronJob(`${name}-${spec.cronName}`, {
                ...spec,
                namespace: args.namespace,
                timeZone: args.timeZone,
                image: args.postgresImage,
                awsCliImageTag: args.awsCliImageTag,
                scriptsConfigMap: WAL_SCRIPTS_CONFIGMAP,
                scriptsMount: WAL_SCRIPTS_MOUNT,
                serviceAccountName: spec.serviceAccount.metadata.name,
                // No retry: a second base backup or restore attempt only repeats the failure's load.
                backoffLimit: 0,
                env: [...archiveEnv(args.bucket, args.encryption, args.region), ...spec.env],
                // pg_ctl and the restoring server write their lock files in /var/run/postgresql.
                volumes: [{ name: "run", emptyDir: {} }, ...(spec.volumes ?? [])],
                volumeMounts: [{ name: "run", mountPath: "/var/run/postgresql" }, ...(spec.volumeMounts ?? [])],
            }, { parent: this });

        const baseBackup = cronJob({
            cronName: "postgres-basebackup",
            labels: BASE_BACKUP_POD_LABELS,
            schedule: args.baseBackupSchedule,
            suspend: false,
            serviceAccount: baseBackupSa,
            script: "base-backup.sh",
            // A spread checkpoint: no I/O spike on the primary; the backup starts within checkpoint_timeout.
            env: [...serverEnv, { name: "BASEBACKUP_CHECKPOINT", value: "spread" }],
            memory: "256Mi",
            activeDeadlineSeconds: 12 * 3600,
        });

        const restoreEnv = (mode: string, dataDir: string) => [
            { name: "RESTORE_TARGET_TIME", value: "latest" },
            { name: "RESTORE_MODE", value: mode },
            { name: "RESTORE_DATA_DIR", value: dataDir },
            { name: "RESTORE_WORK_DIR", value: "/scratch" },
        ];
        const scratchMount = { name: "scratch", mountPath: "/scratch" };
        // Suspended: run by hand (README, "Point-in-time recovery"). The schedule is required and unused.
        const restore = cronJob({
            cronName: "postgres-pitr-restore",
            labels: PITR_RESTORE_POD_LABELS,
            schedule: "0 0 1 1 *",
            suspend: true,
            serviceAccount: pitrSa,
            script: "pitr-restore.sh",
            // The restored server stays up four hours for inspection and export (kubectl exec, psql).
            env: [...restoreEnv("throwaway", "/scratch/pgdata"), { name: "RESTORE_HOLD_SECONDS", value: String(4 * 3600) }],
            volumes: [scratch],
            volumeMounts: [scratchMount],
            memory: "1Gi",
            activeDeadlineSeconds: 24 * 3600,
        });
        const restoreInPlace = cronJob({
            cronName: "postgres-pitr-restore-in-place",
            labels: PITR_RESTORE_POD_LABELS,
            schedule: "0 0 1 1 *",
            suspend: true,
            serviceAccount: pitrSa,
            script: "pitr-restore.sh",
            // The StatefulSet's own claim (scaled to 0 first: the volume attaches to one node).
            env: restoreEnv("in-place", `${DATA_MOUNT}/pgdata`),
            volumes: [scratch, { name: "data", persistentVolumeClaim: { claimName: DATA_CLAIM_NAME } }],
            volumeMounts: [scratchMount, { name: "data", mountPath: DATA_MOUNT }],
            memory: "1Gi",
            activeDeadlineSeconds: 24 * 3600,
        });

        // Base backups may be one schedule gap plus a day old before the verify calls them stopped.
        const maxAgeHours = Math.ceil(cronMaxIntervalSeconds(args.baseBackupSchedule) / 3600) + 24;
        const verify = cronJob({
            cronName: "postgres-pitr-verify",
            labels: PITR_VERIFY_POD_LABELS,
            schedule: args.verifySchedule,
            suspend: args.verifySuspended,
            serviceAccount: pitrSa,
            script: "pitr-verify.sh",
            env: [
                ...serverEnv,
                { name: "VERIFY_DATA_DIR", value: "/scratch" },
                { name: "VERIFY_MAX_BASE_BACKUP_AGE_HOURS", value: String(maxAgeHours) },
            ],
            volumes: [scratch],
            volumeMounts: [scratchMount],
            memory: "1Gi",
            activeDeadlineSeconds: 12 * 3600,
        });

        this.baseBackupCronJobName = baseBackup.metadata.name;
        this.restoreCronJobName = restore.metadata.name;
        this.restoreInPlaceCronJobName = restoreInPlace.metadata.name;
        this.verifyCronJobName = verify.metadata.name;
        this.registerOutputs({
            baseBackupCronJobName: this.baseBackupCronJobName,
            restoreCronJobName: this.restoreCronJobName,
            restoreInPlaceCronJobName: this.restoreInPlaceCronJobName,
            verifyCronJobName: this.verifyCronJobName,
        });
    }
}
