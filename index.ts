// Reads the stack's configuration and wires the platform's components together; no other logic.
import { Backup, BACKUP_POD_LABELS, logicalBackupExpirations, RESTORE_POD_LABELS } from "./components/backup";
import { BackupStore } from "./components/backupStore";
import { Cluster } from "./components/cluster";
import { Mlflow, MLFLOW_POD_LABELS } from "./components/mlflow";
import { Postgres } from "./components/postgres";
import { StorageClass } from "./components/storageClass";
import { loadConfig } from "./config";

const config = loadConfig();
const prefix = `mlflow-${config.stack}`;

const cluster = new Cluster(prefix, { clusterName: prefix, ...config.cluster, awsProfile: config.awsProfile, volumeKmsKeyArn: config.storage.kmsKeyArn });
const k8sOpts = { providers: { kubernetes: cluster.provider } };

const storage = new StorageClass("storage", config.storage, { ...k8sOpts, dependsOn: [cluster.ebsCsiAddon] });

// Before the database: WAL archiving in the database pod writes here.
const backupStore = new BackupStore("backup", {
    encryption: config.backup.encryption,
    expirations: logicalBackupExpirations(config.backup.retentionDays),
    noncurrentVersionDays: config.backup.retentionDays,
    objectLockDays: config.backup.objectLock ? config.backup.objectLockDays : undefined,
    protectData: config.protectData,
});

const postgres = new Postgres("postgres", {
    ...config.postgres,
    storageClassName: storage.className,
    clients: [
        { namespace: config.mlflow.namespace, podLabels: MLFLOW_POD_LABELS },
        { namespace: config.postgres.namespace, podLabels: BACKUP_POD_LABELS },
        { namespace: config.postgres.namespace, podLabels: RESTORE_POD_LABELS },
    ],
    protectData: config.protectData,
}, k8sOpts);

const backup = new Backup("backup", {
    ...config.backup,
    bucket: backupStore,
    namespace: postgres.namespace,
    postgresHost: postgres.primaryHost,
    postgresPort: postgres.port,
    postgresImage: postgres.image,
    postgresMajorVersion: config.postgres.majorVersion,
    backupSecretName: postgres.backupSecretName,
    superuserSecretName: postgres.superuserSecretName,
    storageClassName: storage.className,
    oidcProviderArn: cluster.oidcProviderArn,
    oidcIssuer: cluster.oidcIssuer,
    region: config.region,
}, k8sOpts);

const mlflow = new Mlflow("mlflow", {
    ...config.mlflow,
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
}, k8sOpts);

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
export const mlflowUrl = mlflow.inClusterUrl;
export const mlflowPortForward = mlflow.portForwardCommand;
export const mlflowArtifactBucket = mlflow.artifactBucketName;
export const mlflowAdminSecret = mlflow.adminSecretName;
