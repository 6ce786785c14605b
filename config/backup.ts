// backup.*: logical backups, their verification, WAL archiving and point-in-time recovery.
import { bool, explained, int, isBinaryQuantity, isPgDuration, list, noUnknownKeys, oneOf, Problems, section, str } from "./checks";
import { cronMaxIntervalSeconds, cronProblem, timeZoneProblem } from "./cron";
import { BackupConfig, BucketEncryption } from "./types";

export function backupConfig(p: Problems, raw: unknown): BackupConfig {
    const b = section(p, "backup", raw);
    noUnknownKeys(p, "backup", b, [
        "schedule", "timeZone", "retentionDays", "databases", "encryption", "objectLock", "objectLockDays",
        "verifySchedule", "verifySuspended", "scratchSize", "awsCliImageTag", "lockTimeout", "statementTimeout",
        "archiveTimeoutSeconds", "recoveryWindowDays", "baseBackupSchedule",
    ]);
    const cron = (key: string, v: unknown, def: string) => explained(p, key, v, def, cronProblem);
    const timeZone = (key: string, v: unknown, def: string) => explained(p, key, v, def, timeZoneProblem);
    const backup: BackupConfig = {
        schedule: cron("backup.schedule", b.schedule, "0 2 * * *"),
        timeZone: timeZone("backup.timeZone", b.timeZone, "Etc/UTC"),
        retentionDays: int(p, "backup.retentionDays", b.retentionDays, 7, 1, 3650),
        databases: list(p, "backup.databases", b.databases, ["mlflow", "mlflow_auth"], (v) => v === "all" || /^[a-z_][a-z0-9_]{0,62}$/.test(v), "is not a database name (lowercase, digits, _) or \"all\""),
        encryption: oneOf<BucketEncryption>(p, "backup.encryption", b.encryption, "aws:kms", ["aws:kms", "AES256"]),
        objectLock: bool(p, "backup.objectLock", b.objectLock, false),
        objectLockDays: int(p, "backup.objectLockDays", b.objectLockDays, 7, 1, 3650),
        verifySchedule: cron("backup.verifySchedule", b.verifySchedule, "0 4 * * 0"),
        verifySuspended: bool(p, "backup.verifySuspended", b.verifySuspended, false),
        scratchSize: str(p, "backup.scratchSize", b.scratchSize, "20Gi", isBinaryQuantity, "is not a Kubernetes quantity (e.g. 20Gi)"),
        awsCliImageTag: str(p, "backup.awsCliImageTag", b.awsCliImageTag, "2.31.23", (v) => /^2\.[0-9]+\.[0-9]+$/.test(v), "is not a pinned AWS CLI v2 image tag (e.g. 2.31.23)"),
        // The scripts check the same pattern (lib.sh); 0 is PostgreSQL's "no limit".
        lockTimeout: str(p, "backup.lockTimeout", b.lockTimeout, "1min", isPgDuration, "is not a PostgreSQL duration (e.g. 30s, 1min; 0 waits forever)"),
        statementTimeout: str(p, "backup.statementTimeout", b.statementTimeout, "2h", isPgDuration, "is not a PostgreSQL duration (e.g. 30min, 2h; 0 is no limit)"),
        // The RPO of an idle-but-written server; below 10 s each commit costs a 16 MB segment in S3.
        archiveTimeoutSeconds: int(p, "backup.archiveTimeoutSeconds", b.archiveTimeoutSeconds, 60, 10, 3600),
        recoveryWindowDays: int(p, "backup.recoveryWindowDays", b.recoveryWindowDays, 7, 1, 3650),
        baseBackupSchedule: cron("backup.baseBackupSchedule", b.baseBackupSchedule, "30 1 * * *"),
    };
    if (backup.databases.includes("all") && backup.databases.length > 1) {
        p.add("backup.databases", backup.databases, "lists \"all\" together with names; use one or the other");
    }
    if (!cronProblem(backup.baseBackupSchedule) && cronMaxIntervalSeconds(backup.baseBackupSchedule) > 31 * 86_400) {
        // Every point of the window needs a base backup before it: a monthly gap makes restores replay weeks of WAL.
        p.add("backup.baseBackupSchedule", backup.baseBackupSchedule, "runs less often than every 31 days (daily or weekly is usual)");
    }
    if (backup.objectLock && backup.objectLockDays > backup.retentionDays) {
        // Locked versions cannot be expired, so a lock longer than retention silently extends it.
        p.add("backup.objectLockDays", backup.objectLockDays, `must not exceed backup.retentionDays (${backup.retentionDays})`);
    }
    return backup;
}
