import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { ResourceSpec } from "../config";
import { IrsaRole } from "./irsaRole";
import { ExposureSettings, exposureValues, ExposureValues, schedulingValues, servicePort, trackingPortRules } from "./mlflowExposure";
import { SecureBucket } from "./secureBucket";

export const MLFLOW_CHART = {
    chart: "mlflow",
    version: "1.11.5",
    repo: "https://community-charts.github.io/helm-charts",
    appVersion: "3.15.1",
} as const;
/**
 * The one MLflow image: the server and the chart's database-migration init container run the same
 * build, so `mlflow db upgrade` always matches the server that then uses the schema. The chart
 * would default the migration image to its own appVersion, not to image.tag.
 */
export const MLFLOW_IMAGE = { repository: "burakince/mlflow", tag: MLFLOW_CHART.appVersion } as const;
/** Fixed: the Service name, pod labels and DNS name all derive from it. */
export const MLFLOW_RELEASE_NAME = "mlflow";
/** Fixed: the artifact role's trust policy names exactly this ServiceAccount. */
export const MLFLOW_SERVICE_ACCOUNT = "mlflow";
/** The chart's selector labels (release name "mlflow" = chart name, so fullname is "mlflow"). */
export const MLFLOW_POD_LABELS = { "app.kubernetes.io/name": "mlflow", "app.kubernetes.io/instance": MLFLOW_RELEASE_NAME };
const ARTIFACT_PREFIX = "artifacts";

/**
 * The subset of the chart's values (values.schema.json of chart 1.11.5) this program sets. The
 * schema forbids unknown keys, so every key here must exist there; tests hold the rendered values
 * to this shape and to the schema.
 */
export interface MlflowChartValues {
    replicaCount: number;
    image: { repository: string; tag: string };
    initImages: { mlflowDbMigration: { repository: string; tag: string } };
    podSecurityContext: { seccompProfile: { type: string } };
    serviceAccount: { create: boolean; name: string; annotations: Record<string, string> };
    service: ExposureValues["service"];
    backendStore: {
        databaseMigration: boolean;
        databaseConnectionCheck: boolean;
        postgres: { enabled: boolean; host: string; port: number; database: string; driver: string };
        existingDatabaseSecret: { name: string; usernameKey: string; passwordKey: string };
    };
    postgresql: { enabled: boolean };
    artifactRoot: {
        proxiedArtifactStorage: boolean;
        s3: { enabled: boolean; bucket: string; path: string };
    };
    auth: {
        enabled: boolean;
        existingAdminSecret?: { name: string; usernameKey: string; passwordKey: string };
        defaultPermission?: "READ" | "EDIT" | "MANAGE" | "NO_PERMISSIONS";
        postgres?: {
            enabled: boolean; host: string; port: number; database: string; driver: string;
            existingSecret: { name: string; usernameKey: string; passwordKey: string };
        };
    };
    extraEnvVars: Record<string, string>;
    extraSecretNamesForEnvFrom: string[];
    serverAllowedHosts: string[];
    corsAllowedOrigins: string[];
    resources: { requests: Record<string, string>; limits: Record<string, string> };
    ingress: ExposureValues["ingress"];
    affinity?: object;
    strategy?: object;
    telemetry: { enabled: boolean };
    /** The chart's ServiceMonitor; enabling it also starts the server with --expose-prometheus=/mlflow/metrics. */
    serviceMonitor?: {
        enabled: boolean; useServicePort: boolean; namespace: string; interval: string; telemetryPath: string;
        labels: Record<string, string>; timeout: string; targetLabels: string[]; metricRelabelings: object[];
    };
    extraArgs?: Record<string, string>;
    extraVolumes?: object[];
    extraVolumeMounts?: object[];
}

/** Prometheus scraping of the tracking server. */
export interface MlflowMetrics {
    /** Labels the Prometheus's serviceMonitorSelector matches. */
    labels: Record<string, string>;
    /** The monitoring stack: the chart renders its ServiceMonitor only when the CRD already exists. */
    ready?: pulumi.Resource;
}

/** The directory --expose-prometheus keeps its multiprocess metrics in (the chart's choice). */
const METRICS_DIR = "/mlflow/metrics";

/** How MLflow is exposed (mode, public host, TLS, source ranges) plus what it runs on. */
export interface MlflowArgs extends Omit<ExposureSettings, "releaseName"> {
    /** Namespace created for MLflow; part of its DNS name, so fixed. */
    namespace: string;
    replicas: number;
    /** Worker processes per replica; each opens its own database pools. */
    workers: number;
    /** SQLAlchemy pool size and overflow per engine (config checks the sum against max_connections). */
    databasePoolSize: number;
    databaseMaxOverflow: number;
    resources: ResourceSpec;
    /** Basic-auth login, users in authDatabaseName, admin from a generated Secret. */
    auth: boolean;
    /** Namespaces whose pods may reach the tracking port; index.ts adds e.g. the Prometheus's. */
    clientNamespaces: string[];
    /** The VPC's public subnets, where load balancers live: admitted to the tracking port when exposed. */
    publicSubnetCidrs: pulumi.Input<string[]>;
    /** The PostgreSQL component's outputs, wired through, never retyped. */
    databaseHost: pulumi.Input<string>;
    databasePort: pulumi.Input<number>;
    databaseName: pulumi.Input<string>;
    /** Database for MLflow's user store when authentication is on (several replicas share it). */
    authDatabaseName: pulumi.Input<string>;
    databaseUsername: pulumi.Input<string>;
    databasePassword: pulumi.Input<string>;
    /** MLflow waits for this (the StatefulSet): the migration init container needs the database. */
    databaseReady: pulumi.Resource;
    artifactEncryption: "aws:kms" | "AES256";
    oidcProviderArn: pulumi.Input<string>;
    oidcIssuer: pulumi.Input<string>;
    region: string;
    protectData: boolean;
    /** Scrape the server's Prometheus metrics; undefined: no metrics. */
    metrics?: MlflowMetrics;
}

/** The artifact role's policy: read and write artifacts under their prefix, nothing else. */
export function artifactPolicy(bucketArn: string, kmsKeyArn?: string): string {
    const statements: object[] = [
        { Sid: "ListArtifacts", Effect: "Allow", Action: ["s3:ListBucket"], Resource: [bucketArn], Condition: { StringLike: { "s3:prefix": [`${ARTIFACT_PREFIX}/*`, ARTIFACT_PREFIX] } } },
        { Sid: "ReadWriteArtifacts", Effect: "Allow", Action: ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"], Resource: [`${bucketArn}/${ARTIFACT_PREFIX}/*`] },
    ];
    if (kmsKeyArn) statements.push({ Sid: "UseBucketKey", Effect: "Allow", Action: ["kms:GenerateDataKey", "kms:Decrypt"], Resource: [kmsKeyArn] });
    return JSON.stringify({ Version: "2012-10-17", Statement: statements });
}

/**
 * Chart values for Prometheus metrics. Without authentication the chart's own ServiceMonitor
 * scrapes the Service's http port (useServicePort: its default targetPort "http" names no container
 * port); with it, the chart's ServiceMonitor stays off and the server is started with
 * --expose-prometheus directly (the Mlflow component adds a ServiceMonitor that logs in). Either
 * way the multiprocess metrics go to an emptyDir: the container's root filesystem is read-only.
 */
function metricsValues(namespace: string, labels: Record<string, string>, authEnabled: boolean): Partial<MlflowChartValues> {
    return {
        serviceMonitor: {
            enabled: !authEnabled, useServicePort: true, namespace, interval: "30s", telemetryPath: "/metrics",
            labels, timeout: "10s", targetLabels: [], metricRelabelings: [],
        },
        ...(authEnabled ? { extraArgs: { exposePrometheus: METRICS_DIR } } : {}),
        extraVolumes: [{ name: "prometheus-metrics", emptyDir: { sizeLimit: "256Mi" } }],
        extraVolumeMounts: [{ name: "prometheus-metrics", mountPath: METRICS_DIR }],
    };
}

/**
 * The MLflow tracking server from the community chart, as a real Helm release: runs and the model
 * registry in PostgreSQL, artifacts in S3 behind the server (clients need no AWS credentials).
 */
export class Mlflow extends pulumi.ComponentResource {
    public readonly namespace: pulumi.Output<string>;
    public readonly inClusterUrl: pulumi.Output<string>;
    public readonly portForwardCommand: pulumi.Output<string>;
    /** https://<host> when exposed. */
    public readonly publicUrl?: pulumi.Output<string>;
    public readonly artifactBucketName: pulumi.Output<string>;
    public readonly artifactRoleArn: pulumi.Output<string>;
    /** Secret with the admin login when authentication is on. */
    public readonly adminSecretName?: pulumi.Output<string>;

    constructor(name: string, args: MlflowArgs, opts?: pulumi.ComponentResourceOptions) {
        super("platform:index:Mlflow", name, {}, opts);

        const ns = new k8s.core.v1.Namespace(`${name}-ns`, {
            metadata: {
                name: args.namespace,
                // The chart's init containers set no seccomp profile, so "restricted" would reject them.
                labels: {
                    "pod-security.kubernetes.io/enforce": "baseline",
                    "pod-security.kubernetes.io/warn": "restricted",
                },
            },
        }, { parent: this });
        const namespace = ns.metadata.name;

        const bucket = new SecureBucket(`${name}-artifacts`, {
            purpose: "MLflow artifacts",
            encryption: args.artifactEncryption,
            expirations: [],
            noncurrentVersionDays: 30,
            protectData: args.protectData,
        }, { parent: this });
        const role = new IrsaRole(`${name}-artifacts`, {
            oidcProviderArn: args.oidcProviderArn,
            oidcIssuer: args.oidcIssuer,
            namespace: args.namespace,
            serviceAccountName: MLFLOW_SERVICE_ACCOUNT,
            policy: pulumi.all([bucket.bucketArn, bucket.kmsKeyArn ?? pulumi.output(undefined)]).apply(([b, k]) => artifactPolicy(b, k)),
        }, { parent: this });

        const dbSecret = new k8s.core.v1.Secret(`${name}-db`, {
            metadata: { namespace },
            type: "Opaque",
            stringData: { username: args.databaseUsername, password: args.databasePassword },
        }, { parent: this });

        // Sessions and CSRF tokens must verify on every replica: one key for all, from a Secret,
        // because the chart's flaskServerSecretKey value would put it in plaintext Helm values.
        const flaskKey = new random.RandomPassword(`${name}-flask-key`, { length: 48, special: false }, { parent: this });
        const flaskSecret = new k8s.core.v1.Secret(`${name}-flask`, {
            metadata: { namespace },
            type: "Opaque",
            stringData: { MLFLOW_FLASK_SERVER_SECRET_KEY: flaskKey.result },
        }, { parent: this });

        const authEnabled = args.auth;
        let adminSecret: k8s.core.v1.Secret | undefined;
        if (authEnabled) {
            const adminPassword = new random.RandomPassword(`${name}-admin-password`, { length: 32, special: false }, { parent: this });
            adminSecret = new k8s.core.v1.Secret(`${name}-admin`, {
                metadata: { namespace },
                type: "Opaque",
                stringData: { username: "admin", password: adminPassword.result },
            }, { parent: this });
        }

        const serviceHost = `${MLFLOW_RELEASE_NAME}.${args.namespace}.svc.cluster.local`;
        const exposure = exposureValues({ ...args, releaseName: MLFLOW_RELEASE_NAME });
        const port = servicePort(args);

        const metrics = args.metrics ? metricsValues(args.namespace, args.metrics.labels, authEnabled) : {};
        const strings = pulumi.all({
            host: args.databaseHost, database: args.databaseName, authDatabase: args.authDatabaseName,
            dbSecretName: dbSecret.metadata.name, flaskSecretName: flaskSecret.metadata.name,
            adminSecretName: adminSecret ? adminSecret.metadata.name : pulumi.output(""),
            bucketName: bucket.bucketName, roleArn: role.roleArn,
        });
        const values = pulumi.all([strings, args.databasePort]).apply(([{ host, database, authDatabase, dbSecretName, flaskSecretName, adminSecretName, bucketName, roleArn }, port]): MlflowChartValues => ({
            replicaCount: args.replicas,
            image: { ...MLFLOW_IMAGE },
            initImages: { mlflowDbMigration: { ...MLFLOW_IMAGE } },
            podSecurityContext: { seccompProfile: { type: "RuntimeDefault" } },
            serviceAccount: { create: true, name: MLFLOW_SERVICE_ACCOUNT, annotations: { "eks.amazonaws.com/role-arn": roleArn } },
            service: exposure.service,
            backendStore: {
                databaseMigration: true,
                databaseConnectionCheck: true,
                postgres: { enabled: true, host, port, database, driver: "psycopg2" },
                existingDatabaseSecret: { name: dbSecretName, usernameKey: "username", passwordKey: "password" },
            },
            postgresql: { enabled: false },
            artifactRoot: {
                proxiedArtifactStorage: true,
                s3: { enabled: true, bucket: bucketName, path: ARTIFACT_PREFIX },
            },
            auth: authEnabled && adminSecretName
                ? {
                    enabled: true,
                    existingAdminSecret: { name: adminSecretName, usernameKey: "username", passwordKey: "password" },
                    defaultPermission: "READ",
                    // The default SQLite user store would be per pod; replicas must share one.
                    postgres: {
                        enabled: true, host, port, database: authDatabase, driver: "psycopg2",
                        existingSecret: { name: dbSecretName, usernameKey: "username", passwordKey: "password" },
                    },
                }
                : { enabled: false },
            extraEnvVars: {
                AWS_DEFAULT_REGION: args.region,
                // Per engine and worker process: config/mlflow.ts holds the product under max_connections.
                MLFLOW_SQLALCHEMYSTORE_POOL_SIZE: String(args.databasePoolSize),
                MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW: String(args.databaseMaxOverflow),
            },
            extraSecretNamesForEnvFrom: [flaskSecretName],
            serverAllowedHosts: exposure.serverAllowedHosts,
            corsAllowedOrigins: exposure.corsAllowedOrigins,
            resources: {
                requests: { cpu: args.resources.cpuRequest, memory: args.resources.memoryRequest },
                limits: { memory: args.resources.memoryLimit, ...(args.resources.cpuLimit ? { cpu: args.resources.cpuLimit } : {}) },
            },
            ingress: exposure.ingress,
            telemetry: { enabled: false },
            ...metrics,
            // Explicit, not MLflow's default: the connection budget in config/sizing.ts counts workers.
            extraArgs: { workers: String(args.workers), ...metrics.extraArgs },
            ...schedulingValues(args.replicas, MLFLOW_POD_LABELS),
        }));

        // Only listed namespaces (and, when exposed, the load balancer path) reach the tracking
        // port; the chart creates no NetworkPolicy of its own.
        const exposed = args.exposure !== "none";
        new k8s.networking.v1.NetworkPolicy(`${name}-ingress`, {
            metadata: { namespace },
            spec: {
                podSelector: { matchLabels: MLFLOW_POD_LABELS },
                policyTypes: ["Ingress"],
                ingress: pulumi.output(args.publicSubnetCidrs).apply((publicCidrs) => trackingPortRules({
                    clientNamespaces: args.clientNamespaces,
                    loadBalancerCidrs: exposed ? [...publicCidrs, ...args.loadBalancerSourceRanges] : [],
                })),
            },
        }, { parent: this });

        const release = new k8s.helm.v3.Release(`${name}-release`, {
            name: MLFLOW_RELEASE_NAME,
            namespace,
            chart: MLFLOW_CHART.chart,
            version: MLFLOW_CHART.version,
            repositoryOpts: { repo: MLFLOW_CHART.repo },
            values,
            // A failed install or upgrade rolls back instead of leaving a half-updated release.
            atomic: true,
            cleanupOnFail: true,
            timeout: 900,
            waitForJobs: true,
        }, { parent: this, dependsOn: [args.databaseReady, dbSecret, flaskSecret, ...(adminSecret ? [adminSecret] : []), ...(args.metrics?.ready ? [args.metrics.ready] : [])] });

        if (args.metrics && adminSecret) {
            // With authentication on, MLflow's basic-auth app answers /metrics with 401 like every
            // route but static files (mlflow/server/auth: is_unprotected_route), and the chart's
            // ServiceMonitor has no credentials: this one logs in with the admin Secret instead.
            new k8s.apiextensions.CustomResource(`${name}-servicemonitor`, {
                apiVersion: "monitoring.coreos.com/v1",
                kind: "ServiceMonitor",
                metadata: { name: MLFLOW_RELEASE_NAME, namespace, labels: args.metrics.labels },
                spec: {
                    selector: { matchLabels: MLFLOW_POD_LABELS },
                    namespaceSelector: { matchNames: [args.namespace] },
                    endpoints: [{
                        port: "http",
                        path: "/metrics",
                        interval: "30s",
                        scrapeTimeout: "10s",
                        basicAuth: {
                            username: { name: adminSecret.metadata.name, key: "username" },
                            password: { name: adminSecret.metadata.name, key: "password" },
                        },
                    }],
                },
            }, { parent: this, dependsOn: [release] });
        }

        if (args.replicas >= 2) {
            new k8s.policy.v1.PodDisruptionBudget(`${name}-pdb`, {
                metadata: { namespace },
                spec: { minAvailable: 1, selector: { matchLabels: MLFLOW_POD_LABELS } },
            }, { parent: this, dependsOn: [release] });
        }

        this.namespace = namespace;
        // Plain http inside the cluster, on the Service's port (443 when an NLB terminates TLS in front).
        this.inClusterUrl = pulumi.output(port === 80 ? `http://${serviceHost}` : `http://${serviceHost}:${port}`);
        this.publicUrl = exposed ? pulumi.output(`https://${args.host}`) : undefined;
        this.portForwardCommand = pulumi.interpolate`kubectl -n ${namespace} port-forward svc/${MLFLOW_RELEASE_NAME} 5000:${port}`;
        this.artifactBucketName = bucket.bucketName;
        this.artifactRoleArn = role.roleArn;
        this.adminSecretName = adminSecret?.metadata.name;
        this.registerOutputs({
            namespace: this.namespace,
            inClusterUrl: this.inClusterUrl,
            publicUrl: this.publicUrl,
            portForwardCommand: this.portForwardCommand,
            artifactBucketName: this.artifactBucketName,
            artifactRoleArn: this.artifactRoleArn,
        });
    }
}
