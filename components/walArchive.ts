import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as path from "path";
import { BackupBucket } from "./backupStore";
import { cronMaxIntervalSeconds } from "../config/cron";
import { DatabaseRole } from "./databaseRoles";
import { IrsaRole } from "./irsaRole";
import { PostgresPodExtras, SUPERUSER } from "./postgres";
import { PrefixExpiration } from "./secureBucket";
import { AWS_CLI_DIR, awsCliInitContainer, RESTRICTED } from "./scriptJobs";
import { shellScripts } from "./assets";

/** Key prefixes of the point-in-time recovery data: WAL files and base backups, apart from the logical dumps. */
export const WAL_PREFIX = "wal";
export const BASE_BACKUP_PREFIX = "basebackups";
/** Where the WAL scripts are mounted in the database pod and the jobs. */
export const WAL_SCRIPTS_MOUNT = "/opt/wal";
/** The least-privilege role pg_basebackup connects as (REPLICATION, nothing else). */
export const REPLICATION_ROLE = "replicator";

/**
 * postgresql.conf settings for continuous archiving: every WAL file goes through archive-wal.sh,
 * and an idle-but-written server still switches segments after archiveTimeoutSeconds.
 */
export function walArchiveSettings(scriptsDir: string, archiveTimeoutSeconds: number, hbaFile?: string): [string, string][] {
    return [
        ["archive_mode", "on"],
        ["archive_command", `'${scriptsDir}/archive-wal.sh %p %f'`],
        // PostgreSQL switches only when "important" WAL (a commit, a checkpoint) was written since the
        // last switch (checkpointer.c, CheckArchiveTimeout): an idle server does not archive empty
        // segments, and a commit is archived within archive_timeout plus the upload.
        ["archive_timeout", `${archiveTimeoutSeconds}s`],
        // pg_basebackup needs a WAL sender; two leave room for one retry while one is still ending.
        ["max_wal_senders", "4"],
        ...(hbaFile !== undefined ? [["hba_file", `'${hbaFile}'`] as [string, string]] : []),
    ];
}

/**
 * The database pod's pg_hba.conf. The official image's only remote rule, `host all all all
 * scram-sha-256`, does not match replication connections: base backups need their own line, for the
 * replication role only. Loopback needs a password too (other containers share the pod's network);
 * the local socket stays trusted as in the image (the entrypoint's init scripts use it).
 */
export function pgHbaConf(replicationRole: string = REPLICATION_ROLE): string {
    return [
        "# TYPE  DATABASE     USER                ADDRESS        METHOD",
        "local   all          all                                trust",
        "host    all          all                 127.0.0.1/32   scram-sha-256",
        "host    all          all                 ::1/128        scram-sha-256",
        `host    replication  ${replicationRole.padEnd(18)}  all            scram-sha-256`,
        "host    all          all                 all            scram-sha-256",
        "",
    ].join("\n");
}

/** The base backup role: REPLICATION for pg_basebackup, CONNECT to the maintenance database for the verify's markers. */
export const REPLICATION_DB_ROLE: DatabaseRole = { name: REPLICATION_ROLE, replication: true, connect: ["postgres"] };

/** The database pod's ServiceAccount: its IRSA role may add WAL files to the archive, nothing else. */
export const WAL_SERVICE_ACCOUNT = "postgres";
/** Fixed: the database pod and the recovery jobs mount it by name. */
export const WAL_SCRIPTS_CONFIGMAP = "postgres-wal-scripts";
const SCRIPTS_DIR = path.join(__dirname, "wal", "scripts");
const HBA_FILE = "pg_hba.conf";
/** The aws-cli image's installation, copied into a volume mounted at the same path (absolute symlinks). */
export const AWS_CLI = `${AWS_CLI_DIR}/v2/current/bin/aws`;

/** The scripts (run as they are by the tests) and the pod's pg_hba.conf, as the ConfigMap holds them. */
export function walScripts(): Record<string, string> {
    return { ...shellScripts(SCRIPTS_DIR), [HBA_FILE]: pgHbaConf() };
}

/**
 * Lifecycle rules of a recovery window. Base backups come at most G days apart (the schedule's
 * longest gap), so the newest one older than the window is at most window + G days old: base
 * backups are kept window + G + 1 days. WAL is archived after the base backup it follows began, so
 * keeping WAL one day longer than base backups never removes WAL a kept base backup needs. Object
 * Lock only delays these deletions, never advances them.
 */
export function pitrExpirations(recoveryWindowDays: number, baseBackupSchedule: string): PrefixExpiration[] {
    const gapDays = Math.ceil(cronMaxIntervalSeconds(baseBackupSchedule) / 86_400);
    const baseDays = recoveryWindowDays + gapDays + 1;
    return [
        { id: "expire-base-backups", prefix: `${BASE_BACKUP_PREFIX}/`, days: baseDays },
        { id: "expire-wal", prefix: `${WAL_PREFIX}/`, days: baseDays + 1 },
    ];
}

const kmsStatement = (kmsKeyArn: string | undefined, actions: string[]) =>
    kmsKeyArn ? [{ Sid: "UseBucketKey", Effect: "Allow", Action: actions, Resource: [kmsKeyArn] }] : [];

/**
 * The database pod's policy: add WAL files, read them back (archive-wal.sh compares an existing
 * object before refusing it), no delete. ListBucket without a prefix condition: a HEAD of a missing
 * key answers 404 only to a principal that may list the bucket (403 otherwise, which the script
 * cannot tell from a real denial); the bucket holds backups only.
 */
export function walArchivePolicy(bucketArn: string, kmsKeyArn?: string): string {
    return JSON.stringify({
        Version: "2012-10-17",
        Statement: [
            { Sid: "FindObjects", Effect: "Allow", Action: ["s3:ListBucket"], Resource: [bucketArn] },
            { Sid: "ArchiveWal", Effect: "Allow", Action: ["s3:PutObject", "s3:GetObject"], Resource: [`${bucketArn}/${WAL_PREFIX}/*`] },
            ...kmsStatement(kmsKeyArn, ["kms:GenerateDataKey", "kms:Decrypt"]),
        ],
    });
}


/** What every WAL script needs to reach the archive. */
export function archiveEnv(bucket: BackupBucket, encryption: "aws:kms" | "AES256", region: string): k8s.types.input.core.v1.EnvVar[] {
    return [
        { name: "WAL_BUCKET", value: bucket.bucketName },
        { name: "WAL_PREFIX", value: WAL_PREFIX },
        { name: "BASE_BACKUP_PREFIX", value: BASE_BACKUP_PREFIX },
        { name: "WAL_SSE", value: encryption },
        ...(bucket.kmsKeyArn ? [{ name: "WAL_KMS_KEY_ID", value: bucket.kmsKeyArn }] : []),
        { name: "AWS_REGION", value: region },
        { name: "AWS_CLI", value: AWS_CLI },
        { name: "WAL_HOME", value: "/tmp" },
    ];
}

export interface WalArchiveArgs {
    bucket: BackupBucket;
    /** The database namespace (fixed: the IAM trust policy names the ServiceAccount in it). */
    namespace: string;
    /** The server's image: the sidecar runs its psql. */
    postgresImage: string;
    encryption: "aws:kms" | "AES256";
    region: string;
    archiveTimeoutSeconds: number;
    awsCliImageTag: string;
    oidcProviderArn: pulumi.Input<string>;
    oidcIssuer: pulumi.Input<string>;
}

/**
 * Continuous WAL archiving from the database pod: the archive settings, the scripts, the AWS CLI and
 * the ServiceAccount with a put-only IRSA role, handed to the Postgres component as pod extras. Built
 * before the database; its namespaced objects are made once the database's namespace exists.
 */
export class WalArchive extends pulumi.ComponentResource {
    public readonly podExtras: PostgresPodExtras;
    public readonly roleArn: pulumi.Output<string>;

    constructor(name: string, args: WalArchiveArgs, opts?: pulumi.ComponentResourceOptions) {
        super("platform:index:WalArchive", name, {}, opts);

        const role = new IrsaRole(`${name}-pod`, {
            oidcProviderArn: args.oidcProviderArn,
            oidcIssuer: args.oidcIssuer,
            namespace: args.namespace,
            serviceAccountName: WAL_SERVICE_ACCOUNT,
            policy: pulumi.all([args.bucket.bucketArn, args.bucket.kmsKeyArn ?? pulumi.output(undefined)]).apply(([b, k]) => walArchivePolicy(b, k)),
        }, { parent: this });

        const scripts = { name: "wal-scripts", mountPath: WAL_SCRIPTS_MOUNT, readOnly: true };
        const awsCli = { name: "wal-aws-cli", mountPath: AWS_CLI_DIR, readOnly: true };
        this.podExtras = {
            serviceAccountName: WAL_SERVICE_ACCOUNT,
            settings: walArchiveSettings(WAL_SCRIPTS_MOUNT, args.archiveTimeoutSeconds, `${WAL_SCRIPTS_MOUNT}/${HBA_FILE}`),
            initContainers: [awsCliInitContainer(args.awsCliImageTag, awsCli.name)],
            volumes: [
                { name: scripts.name, configMap: { name: WAL_SCRIPTS_CONFIGMAP, defaultMode: 0o555 } },
                { name: awsCli.name, emptyDir: { sizeLimit: "512Mi" } },
            ],
            env: archiveEnv(args.bucket, args.encryption, args.region),
            volumeMounts: [scripts, awsCli],
            containers: [{
                // PostgreSQL 15+ ignores archive_timeout after a start until its checkpointer is woken:
                // see arm-archive-timeout.sh. Over the pod's socket (the "run" volume), as the superuser.
                name: "wal-arm",
                image: args.postgresImage,
                command: [`${WAL_SCRIPTS_MOUNT}/arm-archive-timeout.sh`],
                env: [
                    { name: "PGHOST", value: "/var/run/postgresql" },
                    { name: "PGUSER", value: SUPERUSER },
                    { name: "WAL_HBA_FILE", value: `${WAL_SCRIPTS_MOUNT}/${HBA_FILE}` },
                ],
                resources: { requests: { cpu: "5m", memory: "16Mi" }, limits: { memory: "64Mi" } },
                securityContext: RESTRICTED,
                volumeMounts: [scripts, { name: "run", mountPath: "/var/run/postgresql" }],
            }],
            namespaced: (namespace) => [
                new k8s.core.v1.ServiceAccount(`${name}-sa`, {
                    metadata: {
                        name: WAL_SERVICE_ACCOUNT,
                        namespace,
                        annotations: { "eks.amazonaws.com/role-arn": role.roleArn },
                    },
                    automountServiceAccountToken: false,
                }, { parent: this }),
                new k8s.core.v1.ConfigMap(`${name}-scripts`, {
                    metadata: { name: WAL_SCRIPTS_CONFIGMAP, namespace },
                    data: walScripts(),
                }, { parent: this }),
            ],
        };
        this.roleArn = role.roleArn;
        this.registerOutputs({ roleArn: this.roleArn });
    }
}
