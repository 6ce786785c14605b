import { DatabaseRole } from "./databaseRoles";

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
