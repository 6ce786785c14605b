// The validated configuration's shape: what every component receives. Defaults and rules live in
// the section files beside this one (cluster.ts, data.ts, backup.ts, mlflow.ts, monitoring.ts).
import { AddonVersions } from "../components/addonVersions";

export type NatGatewayMode = "single" | "perAz";
export type ReclaimPolicy = "Delete" | "Retain";
export type BucketEncryption = "aws:kms" | "AES256";
export type MlflowExposure = "none" | "loadBalancer" | "ingress";
export type NodeAmiType = "AL2023_x86_64_STANDARD" | "AL2023_ARM_64_STANDARD";

export interface ResourceSpec {
    cpuRequest: string;
    memoryRequest: string;
    cpuLimit?: string;
    memoryLimit: string;
}

export type NodeAutoscaler = "none" | "clusterAutoscaler";

export interface ClusterConfig {
    kubernetesVersion: string;
    /** The version the cluster runs now, when known: an upgrade may move one minor at a time. */
    previousKubernetesVersion?: string;
    /** vpc-cni, kube-proxy, coredns and aws-ebs-csi-driver versions: the table's row for kubernetesVersion, then config overrides. */
    addonVersions: AddonVersions;
    vpcCidr: string;
    availabilityZoneCount: number;
    /** Zones pinned in config; otherwise chosen at deploy time from the region's opt-in-free zones. */
    availabilityZones?: string[];
    /** Who owns the node groups' desired size after creation: this program ("none"), or a cluster autoscaler. */
    nodeAutoscaler: NodeAutoscaler;
    /** IAM roles/users granted cluster admin (AmazonEKSClusterAdminPolicy) through EKS access entries. */
    adminPrincipalArns: string[];
    /** IAM roles/users granted read-only access (AmazonEKSViewPolicy). */
    viewerPrincipalArns: string[];
    natGateways: NatGatewayMode;
    nodeInstanceTypes: string[];
    nodeAmiType: NodeAmiType;
    nodeMinSize: number;
    nodeDesiredSize: number;
    nodeMaxSize: number;
    nodeDiskSizeGiB: number;
    endpointPublicAccess: boolean;
    publicAccessCidrs: string[];
    logTypes: string[];
    deletionProtection: boolean;
}

export interface StorageConfig {
    className: string;
    volumeType: string;
    reclaimPolicy: ReclaimPolicy;
    isDefault: boolean;
    kmsKeyArn?: string;
}

export interface PostgresConfig {
    namespace: string;
    imageTag: string;
    /** Major version, derived from imageTag: pg_dump in the backup image must match it. */
    majorVersion: number;
    storageSize: string;
    /** Sizes the data volume had before, oldest first: the record that refuses a shrink. */
    previousStorageSizes: string[];
    resources: ResourceSpec;
    maxConnections: number;
}

export interface BackupConfig {
    schedule: string;
    timeZone: string;
    retentionDays: number;
    databases: string[];
    encryption: BucketEncryption;
    objectLock: boolean;
    objectLockDays: number;
    verifySchedule: string;
    verifySuspended: boolean;
    scratchSize: string;
    awsCliImageTag: string;
    /** PostgreSQL duration: how long backup/restore sessions wait for a lock before failing with its holder named. */
    lockTimeout: string;
    /** PostgreSQL duration: limit on each query the scripts run themselves (row counts, catalog reads). */
    statementTimeout: string;
    /** Longest a committed transaction waits before its WAL segment is switched and archived. */
    archiveTimeoutSeconds: number;
    /** Point-in-time recovery reaches any moment of the last so many days. */
    recoveryWindowDays: number;
    /** When pg_basebackup runs (cron, in timeZone). */
    baseBackupSchedule: string;
}

export interface MlflowConfig {
    namespace: string;
    replicas: number;
    /** Server worker processes per replica (mlflow server --workers). */
    workers: number;
    /** SQLAlchemy pool per engine and worker (MLFLOW_SQLALCHEMYSTORE_POOL_SIZE / _MAX_OVERFLOW). */
    databasePoolSize: number;
    databaseMaxOverflow: number;
    resources: ResourceSpec;
    /** Basic-auth login (users in the mlflow_auth database); on in prod and whenever exposed. */
    auth: boolean;
    /** Namespaces whose pods may reach the tracking server (NetworkPolicy). */
    clientNamespaces: string[];
    exposure: MlflowExposure;
    /** The public DNS name MLflow is reached at when exposed; the TLS certificate covers it. */
    host?: string;
    ingressClassName?: string;
    /** Ingress TLS from a Secret (e.g. cert-manager's) in the MLflow namespace. */
    ingressTlsSecretName?: string;
    /** ACM certificate: TLS at the NLB (loadBalancer) or at an AWS Load Balancer Controller ALB (ingress). */
    tlsCertificateArn?: string;
    loadBalancerSourceRanges: string[];
    artifactEncryption: BucketEncryption;
}


export type MonitoringMode = "install" | "existing" | "none";

export interface MonitoringConfig {
    /** install: kube-prometheus-stack in `namespace`; existing: only the platform's monitoring objects; none: nothing. */
    mode: MonitoringMode;
    /** install: the namespace created for the stack; existing: where the running Prometheus and Grafana live. */
    namespace: string;
    /** Labels on the PrometheusRule and PodMonitor: what the Prometheus's rule/pod/service monitor selectors match. */
    selectorLabels: Record<string, string>;
    /** install: Prometheus's retention (e.g. 15d) and volume size on the platform StorageClass. */
    retention: string;
    storageSize: string;
    resources: ResourceSpec;
    /** Where the README is rendered; alerts link to its sections (runbook_url). */
    runbookBaseUrl: string;
}

export type AlertReceiverType = "slack" | "pagerduty" | "webhook";

/** Where Alertmanager sends alerts. Always a Pulumi secret: the URL or key is a credential. */
export interface AlertReceiver {
    type: AlertReceiverType;
    /** slack, webhook: https URL. */
    url?: string;
    /** slack: channel to post to (the webhook's default when unset). */
    channel?: string;
    /** pagerduty: Events API v2 integration (routing) key. */
    routingKey?: string;
}

export interface PlatformConfig {
    /** Stack name, used in names and tags. */
    stack: string;
    region: string;
    /** aws:profile, when the stack sets one: the kubeconfig and the Kubernetes provider must use it too. */
    awsProfile?: string;
    /** Keep what holds data (volumes, buckets) when resources are deleted or the stack is destroyed. */
    protectData: boolean;
    /** Explicit consent to settings that let a production stack's destroy delete data. */
    allowDataLoss: boolean;
    cluster: ClusterConfig;
    storage: StorageConfig;
    postgres: PostgresConfig;
    backup: BackupConfig;
    mlflow: MlflowConfig;
    monitoring: MonitoringConfig;
    /** From the secret key `alertReceiver`; undefined: alerts are only shown in Alertmanager and Grafana. */
    alertReceiver?: AlertReceiver;
}

/**
 * Every top-level key the program reads from its namespace (`mlflow-platform:<key>`). Anything
 * else there is refused: a typo such as `protectdata` would otherwise deploy the default. A new
 * section is added here, with its own file, and called from validateConfig (index.ts).
 */
export const TOP_LEVEL_KEYS = ["protectData", "allowDataLoss", "cluster", "storage", "postgres", "backup", "mlflow", "monitoring", "alertReceiver"] as const;

/** Keys whose value must be a Pulumi secret (`pulumi config set --secret`). */
export const SECRET_KEYS = ["alertReceiver"] as const;

/** The release label kube-prometheus-stack's selectors match when it is installed here (release name). */
export const KPS_RELEASE_NAME = "kube-prometheus-stack";

/**
 * The raw shape of the stack file: `region` from aws:region, then every key of the project's
 * namespace as written (known or not), every value unchecked.
 */
export interface RawConfig {
    region?: unknown;
    /** aws:profile */
    awsProfile?: unknown;
    [key: string]: unknown;
}
