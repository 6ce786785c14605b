// Reads the stack's configuration and wires the platform's components together; no other logic.
import * as pulumi from "@pulumi/pulumi";
import { Backup, BACKUP_POD_LABELS, logicalBackupExpirations, RESTORE_POD_LABELS } from "./components/backup";
import { BackupStore } from "./components/backupStore";
import { Cluster } from "./components/cluster";
import { Alerts } from "./components/alerts";
import { Dashboards } from "./components/dashboards";
import { Mlflow, MLFLOW_POD_LABELS, MLFLOW_RELEASE_NAME } from "./components/mlflow";
import { Monitoring } from "./components/monitoring";
import { PointInTimeRecovery, BASE_BACKUP_POD_LABELS, PITR_VERIFY_POD_LABELS } from "./components/pitr";
import { Postgres, postgresImage } from "./components/postgres";
import { METRICS_ROLE, PostgresMetrics, postgresExporterExtras } from "./components/postgresMetrics";
import { StorageClass } from "./components/storageClass";
import { pitrExpirations, REPLICATION_DB_ROLE, WalArchive } from "./components/walArchive";
import { loadConfig } from "./config";

const config = loadConfig();
const prefix = `mlflow-${config.stack}`;

const cluster = new Cluster(prefix, { clusterName: prefix, ...config.cluster, awsProfile: config.awsProfile, volumeKmsKeyArn: config.storage.kmsKeyArn });
const k8sOpts = { providers: { kubernetes: cluster.provider } };

const storage = new StorageClass("storage", config.storage, { ...k8sOpts, dependsOn: [cluster.ebsCsiAddon] });

// Before the database: WAL archiving in the database pod writes here.
const backupStore = new BackupStore("backup", {
    encryption: config.backup.encryption,
    expirations: [
        ...logicalBackupExpirations(config.backup.retentionDays),
        ...pitrExpirations(config.backup.recoveryWindowDays, config.backup.baseBackupSchedule),
    ],
    noncurrentVersionDays: config.backup.retentionDays,
    objectLockDays: config.backup.objectLock ? config.backup.objectLockDays : undefined,
    protectData: config.protectData,
});

// Continuous WAL archiving runs in the database pod: its role, scripts and settings come first.
const walArchive = new WalArchive("wal", {
    bucket: backupStore,
    namespace: config.postgres.namespace,
    postgresImage: postgresImage(config.postgres.imageTag),
    encryption: config.backup.encryption,
    region: config.region,
    archiveTimeoutSeconds: config.backup.archiveTimeoutSeconds,
    awsCliImageTag: config.backup.awsCliImageTag,
    oidcProviderArn: cluster.oidcProviderArn,
    oidcIssuer: cluster.oidcIssuer,
}, k8sOpts);

// The monitoring stack first: the platform's monitors and rules are custom resources of its CRDs.
const monitoring = config.monitoring.mode === "install"
    ? new Monitoring("monitoring", {
        namespace: config.monitoring.namespace,
        retention: config.monitoring.retention,
        storageSize: config.monitoring.storageSize,
        resources: config.monitoring.resources,
        storageClassName: storage.className,
        alertReceiver: config.alertReceiver ? pulumi.secret(config.alertReceiver) : undefined,
    }, k8sOpts)
    : undefined;
const watched = config.monitoring.mode !== "none";

const postgres = new Postgres("postgres", {
    ...config.postgres,
    storageClassName: storage.className,
    clients: [
        { namespace: config.mlflow.namespace, podLabels: MLFLOW_POD_LABELS },
        { namespace: config.postgres.namespace, podLabels: BACKUP_POD_LABELS },
        { namespace: config.postgres.namespace, podLabels: RESTORE_POD_LABELS },
        { namespace: config.postgres.namespace, podLabels: BASE_BACKUP_POD_LABELS },
        { namespace: config.postgres.namespace, podLabels: PITR_VERIFY_POD_LABELS },
    ],
    protectData: config.protectData,
    podExtras: [walArchive.podExtras, ...(watched ? [postgresExporterExtras({ monitoringNamespace: config.monitoring.namespace })] : [])],
    extraRoles: [REPLICATION_DB_ROLE, ...(watched ? [METRICS_ROLE] : [])],
}, k8sOpts);

const backup = new Backup("backup", {
    ...config.backup,
    bucket: backupStore,
    namespace: postgres.namespace,
    postgresHost: postgres.primaryHost,
    postgresPort: postgres.port,
    postgresImage: postgres.image,
    postgresMajorVersion: config.postgres.majorVersion,
    databaseStorageSize: config.postgres.storageSize,
    backupSecretName: postgres.backupSecretName,
    superuserSecretName: postgres.superuserSecretName,
    scratchStorageClassName: storage.scratchClassName,
    oidcProviderArn: cluster.oidcProviderArn,
    oidcIssuer: cluster.oidcIssuer,
    region: config.region,
}, k8sOpts);

const pitr = new PointInTimeRecovery("pitr", {
    bucket: backupStore,
    namespace: postgres.namespace,
    postgresHost: postgres.primaryHost,
    postgresPort: postgres.port,
    postgresImage: postgres.image,
    encryption: config.backup.encryption,
    region: config.region,
    awsCliImageTag: config.backup.awsCliImageTag,
    oidcProviderArn: cluster.oidcProviderArn,
    oidcIssuer: cluster.oidcIssuer,
    baseBackupSchedule: config.backup.baseBackupSchedule,
    verifySchedule: config.backup.verifySchedule,
    verifySuspended: config.backup.verifySuspended,
    timeZone: config.backup.timeZone,
    scratchStorageClassName: storage.scratchClassName,
    scratchSize: config.backup.scratchSize,
}, { ...k8sOpts, dependsOn: [postgres.rolesReconciled] });

const mlflow = new Mlflow("mlflow", {
    ...config.mlflow,
    // Who may call the tracking server: the configured namespaces, plus Prometheus when it scrapes.
    clientNamespaces: [...config.mlflow.clientNamespaces, ...(watched ? [config.monitoring.namespace] : [])],
    publicSubnetCidrs: cluster.publicSubnetCidrs,
    databaseHost: postgres.primaryHost,
    databasePort: postgres.port,
    databaseName: postgres.databaseName,
    authDatabaseName: postgres.authDatabaseName,
    databaseUsername: postgres.mlflowUsername,
    databasePassword: postgres.mlflowPassword,
    databaseReady: postgres.rolesReconciled,
    oidcProviderArn: cluster.oidcProviderArn,
    oidcIssuer: cluster.oidcIssuer,
    region: config.region,
    protectData: config.protectData,
    metrics: watched ? { labels: config.monitoring.selectorLabels, ready: monitoring?.release } : undefined,
}, k8sOpts);

if (watched) {
    new PostgresMetrics("postgres-metrics", {
        namespace: postgres.namespace,
        podLabels: postgres.podLabels,
        selectorLabels: config.monitoring.selectorLabels,
        crds: monitoring?.release,
    }, k8sOpts);
    new Alerts("alerts", {
        namespace: monitoring?.namespace ?? config.monitoring.namespace,
        labels: config.monitoring.selectorLabels,
        postgresNamespace: postgres.namespace,
        postgresStatefulSet: postgres.statefulSetName,
        mlflowNamespace: mlflow.namespace,
        mlflowDeployment: MLFLOW_RELEASE_NAME,
        backupCronJob: backup.backupCronJobName,
        verifyCronJob: backup.verifyCronJobName,
        restoreCronJob: backup.restoreCronJobName,
        backupSchedule: config.backup.schedule,
        verifySchedule: config.backup.verifySchedule,
        verifySuspended: config.backup.verifySuspended,
        archiveTimeoutSeconds: config.backup.archiveTimeoutSeconds,
        extraNamespaces: monitoring ? [config.monitoring.namespace] : [],
        runbookBaseUrl: config.monitoring.runbookBaseUrl,
        crds: monitoring?.release,
    }, k8sOpts);
    new Dashboards("dashboards", {
        namespace: monitoring?.namespace ?? config.monitoring.namespace,
        postgresNamespace: postgres.namespace,
        postgresStatefulSet: postgres.statefulSetName,
        cronJobs: [backup.backupCronJobName, backup.verifyCronJobName, backup.restoreCronJobName],
        mlflowNamespace: mlflow.namespace,
        mlflowDeployment: MLFLOW_RELEASE_NAME,
    }, k8sOpts);
}

export const clusterName = cluster.clusterName;
export const kubeconfig = cluster.kubeconfig;
export const vpcId = cluster.vpcId;
export const privateSubnetIds = cluster.privateSubnetIds;
export const oidcProviderArn = cluster.oidcProviderArn;
export const storageClassName = storage.className;
export const postgresPrimaryHost = postgres.primaryHost;
export const postgresServiceHost = postgres.serviceHost;
export const postgresPort = postgres.port;
export const postgresNamespace = postgres.namespace;
export const postgresSuperuserSecret = postgres.superuserSecretName;
export const postgresMlflowSecret = postgres.mlflowSecretName;
export const backupBucket = backupStore.bucketName;
export const backupCronJob = backup.backupCronJobName;
export const restoreCronJob = backup.restoreCronJobName;
export const restoreVerifyCronJob = backup.verifyCronJobName;
export const baseBackupCronJob = pitr.baseBackupCronJobName;
export const pitrRestoreCronJob = pitr.restoreCronJobName;
export const pitrRestoreInPlaceCronJob = pitr.restoreInPlaceCronJobName;
export const pitrVerifyCronJob = pitr.verifyCronJobName;
export const mlflowUrl = mlflow.inClusterUrl;
export const mlflowPublicUrl = mlflow.publicUrl;
export const mlflowPortForward = mlflow.portForwardCommand;
export const mlflowArtifactBucket = mlflow.artifactBucketName;
export const mlflowAdminSecret = mlflow.adminSecretName;
export const grafanaPortForward = monitoring?.grafanaPortForwardCommand;
export const grafanaAdminSecret = monitoring?.grafanaAdminSecretName;
