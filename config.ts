// One typed, validated view of a stack's configuration. Every default lives here, every rule
// is checked at program start, and all problems are reported together so a user fixes a stack
// file in one pass instead of one `pulumi preview` per typo.
import * as pulumi from "@pulumi/pulumi";
import { ADDON_NAMES, ADDON_VERSION, ADDON_VERSIONS, AddonVersions } from "./components/addonVersions";
import { cronProblem, timeZoneProblem } from "./cron";
import { cronMaxIntervalSeconds } from "./components/cron";

export { cronProblem } from "./cron";

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

/**
 * Connections to PostgreSQL that are not MLflow's pools, counted against postgres.maxConnections:
 * superuser_reserved_connections (PostgreSQL's default 3, unavailable to other roles), the
 * backup, restore and role-reconcile jobs (one each), the metrics exporter, one database
 * migration of a starting pod, and two operator sessions (psql).
 */
export const RESERVED_CONNECTIONS = { superuserReserved: 3, backup: 1, restore: 1, roleReconcile: 1, metricsExporter: 2, migration: 1, operator: 2 } as const;

/**
 * The most connections MLflow's pools can hold at once: during a rolling update one pod more
 * than replicas runs (the chart's default surge of 100% with one replica, our maxSurge 1 with
 * more); every worker process opens an engine for the tracking store and one for the model
 * registry (counted separately, as MLflow may not share them) and, with auth, one for mlflow_auth;
 * each engine holds up to pool + overflow connections.
 */
export function mlflowPeakConnections(m: Pick<MlflowConfig, "replicas" | "workers" | "databasePoolSize" | "databaseMaxOverflow" | "auth">): number {
    const pods = m.replicas + 1;
    const engines = 2 + (m.auth ? 1 : 0);
    return pods * m.workers * engines * (m.databasePoolSize + m.databaseMaxOverflow);
}

export function reservedConnections(): number {
    return Object.values(RESERVED_CONNECTIONS).reduce((a, b) => a + b, 0);
}

/**
 * The largest pool (up to 10, plus up to 5 overflow) that keeps MLflow's peak within what
 * postgres.maxConnections leaves after the reserved connections; undefined when not even one
 * connection per engine fits.
 */
export function defaultDatabasePool(m: Pick<MlflowConfig, "replicas" | "workers" | "auth">, maxConnections: number): { size: number; overflow: number } | undefined {
    const engines = mlflowPeakConnections({ ...m, databasePoolSize: 1, databaseMaxOverflow: 0 });
    const perEngine = Math.floor((maxConnections - reservedConnections()) / engines);
    if (perEngine < 1) return undefined;
    const overflow = Math.min(5, Math.floor(perEngine / 3));
    return { size: Math.min(10, perEngine - overflow), overflow };
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
 * section is added here and validated below.
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

export const EKS_LOG_TYPES = ["api", "audit", "authenticator", "controllerManager", "scheduler"];
const POSTGRES_MAJORS = [14, 15, 16, 17, 18];

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
// Kubernetes quantities with a binary suffix: what volume and memory sizes are written in.
const BINARY_QUANTITY = /^([1-9][0-9]*)(Ki|Mi|Gi|Ti|Pi)$/;
const CPU_QUANTITY = /^([1-9][0-9]*m|[0-9]+(\.[0-9]+)?)$/;
const INSTANCE_TYPE = /^[a-z][a-z0-9-]*\.[0-9]*[a-z0-9]+$/;
// Commercial partition only: IAM policy ARNs below are written as arn:aws:...
const REGION = /^(us|eu|ap|ca|sa|me|af|il|mx)-[a-z]+-[0-9]$/;
// IAM roles and users (an access entry's principal); not sts assumed-role session ARNs.
const PRINCIPAL_ARN = /^arn:aws:iam::[0-9]{12}:(role|user)\/[A-Za-z0-9+=,.@_\/-]{1,512}$/;
const KUBERNETES_MINOR = /^1\.(2[89]|3[0-9])$/;
const ACM_CERTIFICATE_ARN = /^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate\/[0-9a-f-]{36}$/;
const DNS_HOST = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]{2,}$/;
const KMS_KEY_ARN = /^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key\/[0-9a-f-]{36}$/;

/** Collects every problem found, then throws one error that lists them all. */
class Problems {
    readonly list: string[] = [];
    add(key: string, value: unknown, allowed: string): void {
        this.list.push(`${key}: ${JSON.stringify(value)} ${allowed}`);
    }
}

type Obj = Record<string, unknown>;

function section(p: Problems, key: string, value: unknown): Obj {
    if (value === undefined || value === null) return {};
    if (typeof value !== "object" || Array.isArray(value)) {
        p.add(key, value, "is not an object of settings");
        return {};
    }
    const obj = value as Obj;
    return obj;
}

/** Levenshtein distance, for "did you mean" on misspelt keys. */
export function editDistance(a: string, b: string): number {
    const row = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
        let diag = row[0];
        row[0] = i;
        for (let j = 1; j <= b.length; j++) {
            const up = row[j];
            row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
            diag = up;
        }
    }
    return row[b.length];
}

/** The known key a typo most likely meant: same letters in another case, or a few edits away. */
export function didYouMean(key: string, known: readonly string[]): string | undefined {
    const lower = key.toLowerCase();
    let best: { k: string; d: number } | undefined;
    for (const k of known) {
        const d = k.toLowerCase() === lower ? 0 : editDistance(lower, k.toLowerCase());
        if (d <= Math.max(1, Math.floor(k.length / 4)) && (best === undefined || d < best.d)) best = { k, d };
    }
    return best?.k;
}

/** Unknown keys are almost always typos; silently ignoring them would deploy the default instead. */
function noUnknownKeys(p: Problems, key: string, obj: Obj, known: readonly string[]): void {
    for (const k of Object.keys(obj)) {
        if (known.includes(k)) continue;
        const guess = didYouMean(k, known);
        p.add(key ? `${key}.${k}` : k, obj[k], `is not a known setting${guess ? `: did you mean ${key ? `${key}.` : ""}${guess}?` : ""} (known: ${known.join(", ")})`);
    }
}

/** A duration as PostgreSQL's timeout settings take it: an integer with an optional unit. */
const isPgDuration = (v: string): boolean => /^[0-9]+(ms|s|min|h|d)?$/.test(v);

function str(p: Problems, key: string, v: unknown, def: string, test: (s: string) => boolean, allowed: string): string {
    if (v === undefined) return def;
    if (typeof v !== "string" || !test(v)) {
        p.add(key, v, allowed);
        return def;
    }
    return v;
}

function oneOf<T extends string>(p: Problems, key: string, v: unknown, def: T, values: readonly T[]): T {
    return str(p, key, v, def, (s) => (values as readonly string[]).includes(s), `is not one of ${values.join(", ")}`) as T;
}

function int(p: Problems, key: string, v: unknown, def: number, min: number, max: number): number {
    if (v === undefined) return def;
    // Stack files written with `pulumi config set` hold numbers as strings.
    const n = typeof v === "string" && /^-?[0-9]+$/.test(v) ? Number(v) : v;
    if (typeof n !== "number" || !Number.isInteger(n) || n < min || n > max) {
        p.add(key, v, `is not a whole number from ${min} to ${max}`);
        return def;
    }
    return n;
}

function bool(p: Problems, key: string, v: unknown, def: boolean): boolean {
    if (v === undefined) return def;
    if (v === true || v === "true") return true;
    if (v === false || v === "false") return false;
    p.add(key, v, "is not true or false");
    return def;
}

function list(p: Problems, key: string, v: unknown, def: string[], test: (s: string) => boolean, allowed: string, minItems = 1): string[] {
    if (v === undefined) return def;
    if (!Array.isArray(v) || v.length < minItems) {
        p.add(key, v, `is not a list of ${minItems} or more items`);
        return def;
    }
    let ok = true;
    v.forEach((item, i) => {
        if (typeof item !== "string" || !test(item)) {
            p.add(`${key}[${i}]`, item, allowed);
            ok = false;
        }
    });
    if (ok && new Set(v).size !== v.length) {
        p.add(key, v, "has duplicate items");
        ok = false;
    }
    return ok ? (v as string[]) : def;
}

export function isDns1123Label(s: string): boolean {
    return s.length <= 63 && DNS1123_LABEL.test(s);
}

export function isBinaryQuantity(s: string): boolean {
    return BINARY_QUANTITY.test(s);
}

export function isCpuQuantity(s: string): boolean {
    return CPU_QUANTITY.test(s) && parseCpu(s) > 0;
}

/** Bytes of a binary quantity (e.g. "2Gi"). */
export function quantityBytes(s: string): number {
    const m = BINARY_QUANTITY.exec(s);
    if (!m) throw new Error(`not a binary quantity: ${s}`);
    const exp = ["Ki", "Mi", "Gi", "Ti", "Pi"].indexOf(m[2]) + 1;
    return Number(m[1]) * 1024 ** exp;
}

function parseCpu(s: string): number {
    return s.endsWith("m") ? Number(s.slice(0, -1)) / 1000 : Number(s);
}

export function isIpv4Cidr(s: string): boolean {
    const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(s);
    if (!m) return false;
    const octets = m.slice(1, 5).map(Number);
    const prefix = Number(m[5]);
    if (octets.some((o) => o > 255) || prefix > 32) return false;
    const addr = octets.reduce((a, o) => a * 256 + o, 0);
    // Host bits must be zero: AWS rejects 10.0.0.1/16 as a VPC or allow-list CIDR.
    return addr % 2 ** (32 - prefix) === 0;
}

/** The add-on versions for a Kubernetes minor: the table's row, then what config overrides. */
function addonVersions(p: Problems, minor: string, v: unknown): AddonVersions {
    const o = section(p, "cluster.addonVersions", v);
    noUnknownKeys(p, "cluster.addonVersions", o, ADDON_NAMES);
    const row: Partial<AddonVersions> = ADDON_VERSIONS[minor] ?? {};
    const out: Partial<AddonVersions> = {};
    const missing: string[] = [];
    for (const name of ADDON_NAMES) {
        const given = o[name];
        if (given !== undefined && (typeof given !== "string" || !ADDON_VERSION.test(given))) {
            p.add(`cluster.addonVersions.${name}`, given, "is not an EKS add-on version (e.g. v1.21.1-eksbuild.7; list them with aws eks describe-addon-versions)");
        } else if (given !== undefined) {
            out[name] = given;
        } else if (row[name] !== undefined) {
            out[name] = row[name];
        } else {
            missing.push(name);
        }
    }
    if (missing.length > 0) {
        p.add("cluster.addonVersions", o, `has no version for ${missing.join(", ")} on Kubernetes ${minor}, and components/addonVersions.ts has no row for ${minor} ` +
            `(rows: ${Object.keys(ADDON_VERSIONS).join(", ")}): set them from aws eks describe-addon-versions --kubernetes-version ${minor}`);
    }
    return out as AddonVersions;
}

/** Rules about how a cluster may change or be sized, beyond each key's own. */
function clusterChangeProblems(p: Problems, cluster: ClusterConfig): void {
    const minor = (v: string) => Number(v.split(".")[1]);
    const prev = cluster.previousKubernetesVersion;
    if (prev !== undefined && KUBERNETES_MINOR.test(prev) && KUBERNETES_MINOR.test(cluster.kubernetesVersion)) {
        const step = minor(cluster.kubernetesVersion) - minor(prev);
        if (step < 0) {
            p.add("cluster.kubernetesVersion", cluster.kubernetesVersion, `is older than cluster.previousKubernetesVersion (${prev}): EKS cannot downgrade a control plane`);
        } else if (step > 1) {
            p.add("cluster.kubernetesVersion", cluster.kubernetesVersion, `is ${step} minors past cluster.previousKubernetesVersion (${prev}): EKS upgrades one minor at a time; set 1.${minor(prev) + 1} first (README, "Upgrading Kubernetes")`);
        }
    }
    const zones = cluster.availabilityZones;
    if (zones !== undefined && zones.length !== cluster.availabilityZoneCount) {
        p.add("cluster.availabilityZoneCount", cluster.availabilityZoneCount, `must equal the number of cluster.availabilityZones (${zones.length}), or be left out`);
    }
    if (zones !== undefined && zones.length > 3) p.add("cluster.availabilityZones", zones, "lists more than 3 zones");
    if (cluster.nodeMinSize < cluster.availabilityZoneCount) {
        p.add("cluster.nodeMinSize", cluster.nodeMinSize, `must be at least the number of zones (${cluster.availabilityZoneCount}): every zone keeps a node, so a PostgreSQL volume's zone always has one to attach to`);
    }
    const both = cluster.adminPrincipalArns.filter((a) => cluster.viewerPrincipalArns.includes(a));
    if (both.length > 0) p.add("cluster.viewerPrincipalArns", both, "are also in cluster.adminPrincipalArns; a principal has one access entry");
}

// RFC 5737's documentation ranges: copied from examples, never anyone's real address.
const DOCUMENTATION_RANGES = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"];

function cidrRange(cidr: string): [number, number] {
    const [ip, prefix] = cidr.split("/");
    const start = ip.split(".").reduce((a, o) => a * 256 + Number(o), 0);
    return [start, start + 2 ** (32 - Number(prefix)) - 1];
}

function cidrWithin(inner: string, outer: string): boolean {
    const [i0, i1] = cidrRange(inner);
    const [o0, o1] = cidrRange(outer);
    return o0 <= i0 && i1 <= o1;
}

const PUT_THERE = "list the egress CIDRs of your VPN or office (your address as seen by AWS: curl https://checkip.amazonaws.com, as /32), or set cluster.endpointPublicAccess: false and reach the API from inside the VPC";

/** The public API endpoint's allow-list must let the operators in, and in prod only them. */
function publicAccessProblems(p: Problems, cluster: ClusterConfig, unset: boolean, prod: boolean): void {
    cluster.publicAccessCidrs.forEach((cidr, i) => {
        const doc = DOCUMENTATION_RANGES.find((r) => cidrWithin(cidr, r));
        if (doc) p.add(`cluster.publicAccessCidrs[${i}]`, cidr, `is in the documentation range ${doc}, which no real client uses: the cluster API would be unreachable; ${PUT_THERE}`);
    });
    if (!prod || !cluster.endpointPublicAccess) return;
    if (unset) {
        p.add("cluster.publicAccessCidrs", undefined, `is required in stack prod (the default 0.0.0.0/0 opens the API endpoint to the internet): ${PUT_THERE}`);
    } else if (cluster.publicAccessCidrs.includes("0.0.0.0/0")) {
        p.add("cluster.publicAccessCidrs", cluster.publicAccessCidrs, `must not contain 0.0.0.0/0 in stack prod: ${PUT_THERE}`);
    }
}

/**
 * The memory model behind postgres.maxConnections: the settings postgresConf (components/postgres.ts)
 * writes for a memory limit are shared_buffers = limit/4 and maintenance_work_mem = limit/16 within
 * 64MB-1GB; every connection must then still have room for at least one work_mem at its 4MB floor.
 * (A backend may use several work_mem at once; the sizing spreads the rest of memory over three
 * per connection, so this is the least a limit must allow, not a generous budget.)
 */
export const WORK_MEM_FLOOR_MIB = 4;

export function maxConnectionsFor(memoryLimit: string): number {
    const mib = quantityBytes(memoryLimit) / 1024 ** 2;
    const maintenance = Math.min(1024, Math.max(64, mib / 16));
    return Math.floor((mib - mib / 4 - maintenance) / WORK_MEM_FLOOR_MIB);
}

/** The smallest memory limit, in 256Mi steps, that fits `connections`. */
export function memoryFor(connections: number): string {
    for (let mib = 256; ; mib += 256) {
        const q = mib % 1024 === 0 ? `${mib / 1024}Gi` : `${mib}Mi`;
        if (maxConnectionsFor(q) >= connections) return q;
    }
}

function resources(p: Problems, key: string, v: unknown, def: ResourceSpec): ResourceSpec {
    const o = section(p, key, v);
    noUnknownKeys(p, key, o, ["cpuRequest", "memoryRequest", "cpuLimit", "memoryLimit"]);
    const cpuRequest = str(p, `${key}.cpuRequest`, o.cpuRequest, def.cpuRequest, isCpuQuantity, "is not a CPU quantity (e.g. 250m or 1)");
    const memoryRequest = str(p, `${key}.memoryRequest`, o.memoryRequest, def.memoryRequest, isBinaryQuantity, "is not a Kubernetes quantity (e.g. 512Mi or 2Gi)");
    const cpuLimit = o.cpuLimit === undefined ? def.cpuLimit : str(p, `${key}.cpuLimit`, o.cpuLimit, "", isCpuQuantity, "is not a CPU quantity (e.g. 500m or 2)");
    const memoryLimit = str(p, `${key}.memoryLimit`, o.memoryLimit, def.memoryLimit, isBinaryQuantity, "is not a Kubernetes quantity (e.g. 1Gi)");
    if (isBinaryQuantity(memoryRequest) && isBinaryQuantity(memoryLimit) && quantityBytes(memoryRequest) > quantityBytes(memoryLimit)) {
        p.add(`${key}.memoryRequest`, memoryRequest, `must not exceed memoryLimit (${memoryLimit})`);
    }
    if (cpuLimit && isCpuQuantity(cpuRequest) && isCpuQuantity(cpuLimit) && parseCpu(cpuRequest) > parseCpu(cpuLimit)) {
        p.add(`${key}.cpuRequest`, cpuRequest, `must not exceed cpuLimit (${cpuLimit})`);
    }
    return { cpuRequest, memoryRequest, cpuLimit: cpuLimit || undefined, memoryLimit };
}

/**
 * Validates raw stack settings and fills in defaults. Throws one error naming every bad key,
 * its value and what is allowed. Pure, so tests can call it without a Pulumi runtime.
 */
export function validateConfig(stack: string, raw: RawConfig, secretKeys: readonly string[] = []): PlatformConfig {
    const p = new Problems();

    const region = str(p, "aws:region", raw.region, "", (s) => REGION.test(s), "is not an AWS commercial-partition region (e.g. us-east-1, eu-west-1)");
    if (raw.region === undefined) p.add("aws:region", undefined, "is required (pulumi config set aws:region us-east-1)");
    const { region: _region, awsProfile, ...own } = raw;
    if (awsProfile !== undefined && (typeof awsProfile !== "string" || awsProfile === "")) p.add("aws:profile", awsProfile, "is not a profile name");
    noUnknownKeys(p, "", own, TOP_LEVEL_KEYS);
    const protectData = bool(p, "protectData", raw.protectData, false);
    const allowDataLoss = bool(p, "allowDataLoss", raw.allowDataLoss, false);
    // A production stack: named prod, or holding data worth protecting. Its destroy must never take data.
    const production = stack === "prod" || protectData;

    const c = section(p, "cluster", raw.cluster);
    noUnknownKeys(p, "cluster", c, [
        "kubernetesVersion", "previousKubernetesVersion", "addonVersions", "vpcCidr", "availabilityZoneCount", "availabilityZones",
        "natGateways", "nodeInstanceTypes", "nodeAmiType", "nodeMinSize", "nodeDesiredSize", "nodeMaxSize", "nodeAutoscaler",
        "nodeDiskSizeGiB", "endpointPublicAccess", "publicAccessCidrs", "logTypes", "deletionProtection",
        "adminPrincipalArns", "viewerPrincipalArns",
    ]);
    const minorText = "is not a Kubernetes minor version EKS offers (1.28 to 1.39, e.g. \"1.34\")";
    const kubernetesVersion = str(p, "cluster.kubernetesVersion", c.kubernetesVersion, "1.34", (s) => KUBERNETES_MINOR.test(s), minorText);
    const previousKubernetesVersion = c.previousKubernetesVersion === undefined ? undefined : str(p, "cluster.previousKubernetesVersion", c.previousKubernetesVersion, "", (s) => KUBERNETES_MINOR.test(s), minorText) || undefined;
    const zoneList = c.availabilityZones === undefined ? undefined : list(p, "cluster.availabilityZones", c.availabilityZones, [], (z) => typeof region === "string" && z.startsWith(region) && /^[a-z]{2}-[a-z]+-[0-9][a-z]$/.test(z), `is not an availability zone of aws:region ${region} (e.g. ${region}a)`, 2);
    const cluster: ClusterConfig = {
        kubernetesVersion,
        previousKubernetesVersion,
        addonVersions: addonVersions(p, kubernetesVersion, c.addonVersions),
        vpcCidr: str(p, "cluster.vpcCidr", c.vpcCidr, "10.0.0.0/16", (s) => isIpv4Cidr(s) && Number(s.split("/")[1]) >= 16 && Number(s.split("/")[1]) <= 20, "is not an IPv4 CIDR with a prefix from /16 to /20 (e.g. 10.0.0.0/16)"),
        availabilityZoneCount: int(p, "cluster.availabilityZoneCount", c.availabilityZoneCount, zoneList && zoneList.length > 0 ? zoneList.length : 2, 2, 3),
        availabilityZones: zoneList && zoneList.length > 0 ? zoneList : undefined,
        nodeAutoscaler: oneOf<NodeAutoscaler>(p, "cluster.nodeAutoscaler", c.nodeAutoscaler, "none", ["none", "clusterAutoscaler"]),
        adminPrincipalArns: list(p, "cluster.adminPrincipalArns", c.adminPrincipalArns, [], (a) => PRINCIPAL_ARN.test(a), "is not an IAM role or user ARN (arn:aws:iam::<account>:role/<name>; an sts assumed-role session ARN cannot hold an access entry)", 0),
        viewerPrincipalArns: list(p, "cluster.viewerPrincipalArns", c.viewerPrincipalArns, [], (a) => PRINCIPAL_ARN.test(a), "is not an IAM role or user ARN (arn:aws:iam::<account>:role/<name>; an sts assumed-role session ARN cannot hold an access entry)", 0),
        natGateways: oneOf<NatGatewayMode>(p, "cluster.natGateways", c.natGateways, "single", ["single", "perAz"]),
        nodeInstanceTypes: list(p, "cluster.nodeInstanceTypes", c.nodeInstanceTypes, ["t3.large"], (s) => INSTANCE_TYPE.test(s), "is not an EC2 instance type (e.g. m6i.large)"),
        nodeAmiType: oneOf<NodeAmiType>(p, "cluster.nodeAmiType", c.nodeAmiType, "AL2023_x86_64_STANDARD", ["AL2023_x86_64_STANDARD", "AL2023_ARM_64_STANDARD"]),
        nodeMinSize: int(p, "cluster.nodeMinSize", c.nodeMinSize, 2, 1, 100),
        nodeDesiredSize: int(p, "cluster.nodeDesiredSize", c.nodeDesiredSize, 2, 1, 100),
        nodeMaxSize: int(p, "cluster.nodeMaxSize", c.nodeMaxSize, 3, 1, 100),
        nodeDiskSizeGiB: int(p, "cluster.nodeDiskSizeGiB", c.nodeDiskSizeGiB, 50, 20, 16384),
        endpointPublicAccess: bool(p, "cluster.endpointPublicAccess", c.endpointPublicAccess, true),
        publicAccessCidrs: list(p, "cluster.publicAccessCidrs", c.publicAccessCidrs, ["0.0.0.0/0"], isIpv4Cidr, "is not an IPv4 CIDR (e.g. 100.24.0.0/16)"),
        logTypes: list(p, "cluster.logTypes", c.logTypes, ["api", "audit", "authenticator"], (s) => EKS_LOG_TYPES.includes(s), `is not an EKS log type (${EKS_LOG_TYPES.join(", ")})`, 0),
        deletionProtection: bool(p, "cluster.deletionProtection", c.deletionProtection, false),
    };
    publicAccessProblems(p, cluster, c.publicAccessCidrs === undefined, stack === "prod");
    clusterChangeProblems(p, cluster);
    if (!(cluster.nodeMinSize <= cluster.nodeDesiredSize && cluster.nodeDesiredSize <= cluster.nodeMaxSize)) {
        p.add("cluster.nodeDesiredSize", cluster.nodeDesiredSize, `must satisfy nodeMinSize (${cluster.nodeMinSize}) <= nodeDesiredSize <= nodeMaxSize (${cluster.nodeMaxSize})`);
    }
    const armTypes = cluster.nodeInstanceTypes.filter((t) => /^[a-z]+[0-9]+[a-z]*g[a-z]*\./.test(t));
    if (armTypes.length > 0 && armTypes.length < cluster.nodeInstanceTypes.length) {
        p.add("cluster.nodeInstanceTypes", cluster.nodeInstanceTypes, "mixes Graviton (arm64) and x86_64 instance types; one node group runs one architecture");
    } else if (armTypes.length > 0 && cluster.nodeAmiType !== "AL2023_ARM_64_STANDARD") {
        p.add("cluster.nodeAmiType", cluster.nodeAmiType, `does not fit the Graviton instance types ${armTypes.join(", ")} (use AL2023_ARM_64_STANDARD)`);
    } else if (armTypes.length === 0 && cluster.nodeAmiType === "AL2023_ARM_64_STANDARD") {
        p.add("cluster.nodeAmiType", cluster.nodeAmiType, "needs Graviton instance types (e.g. m7g.large)");
    }

    const s = section(p, "storage", raw.storage);
    noUnknownKeys(p, "storage", s, ["className", "volumeType", "reclaimPolicy", "isDefault", "kmsKeyArn"]);
    const storage: StorageConfig = {
        // EKS already ships a StorageClass named gp2 on the in-tree provisioner, so ours needs another name.
        className: str(p, "storage.className", s.className, "gp2-csi", (v) => isDns1123Label(v) && v !== "gp2", "is not a DNS-1123 name other than gp2 (EKS owns gp2)"),
        volumeType: oneOf(p, "storage.volumeType", s.volumeType, "gp2", ["gp2", "gp3", "io1", "io2"]),
        reclaimPolicy: oneOf<ReclaimPolicy>(p, "storage.reclaimPolicy", s.reclaimPolicy, production ? "Retain" : "Delete", ["Delete", "Retain"]),
        isDefault: bool(p, "storage.isDefault", s.isDefault, false),
        kmsKeyArn: s.kmsKeyArn === undefined ? undefined : str(p, "storage.kmsKeyArn", s.kmsKeyArn, "", (v) => KMS_KEY_ARN.test(v), "is not a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>)"),
    };

    if (production && !allowDataLoss) {
        const why = stack === "prod" ? `stack "prod"` : "a stack with protectData: true";
        if (!protectData) {
            p.add("protectData", protectData, `must be true in ${why}: without it pulumi destroy deletes the database, its Secrets and the buckets (set allowDataLoss: true to accept that)`);
        }
        if (storage.reclaimPolicy === "Delete") {
            p.add("storage.reclaimPolicy", storage.reclaimPolicy, `must be Retain in ${why}: with Delete, deleting the claim or the stack deletes the EBS volume and the database on it (set allowDataLoss: true to accept that)`);
        }
    }

    const pg = section(p, "postgres", raw.postgres);
    noUnknownKeys(p, "postgres", pg, ["namespace", "imageTag", "storageSize", "previousStorageSizes", "resources", "maxConnections"]);
    const imageTag = str(p, "postgres.imageTag", pg.imageTag, "17.6", (v) => /^(1[4-8])\.[0-9]+$/.test(v), `is not a pinned postgres image tag MAJOR.MINOR with major ${POSTGRES_MAJORS.join(", ")} (e.g. 17.6)`);
    const postgres: PostgresConfig = {
        namespace: str(p, "postgres.namespace", pg.namespace, "data", isDns1123Label, "is not a DNS-1123 label (lowercase letters, digits, '-', at most 63)"),
        imageTag,
        majorVersion: Number(imageTag.split(".")[0]),
        storageSize: str(p, "postgres.storageSize", pg.storageSize, "20Gi", isBinaryQuantity, "is not a Kubernetes quantity (e.g. 20Gi)"),
        previousStorageSizes: list(p, "postgres.previousStorageSizes", pg.previousStorageSizes, [], isBinaryQuantity, "is not a Kubernetes quantity (e.g. 20Gi)", 0),
        resources: resources(p, "postgres.resources", pg.resources, { cpuRequest: "250m", memoryRequest: "1Gi", memoryLimit: "1Gi" }),
        maxConnections: int(p, "postgres.maxConnections", pg.maxConnections, 100, 20, 5000),
    };
    if (isBinaryQuantity(postgres.storageSize) && quantityBytes(postgres.storageSize) < quantityBytes("1Gi")) {
        p.add("postgres.storageSize", postgres.storageSize, "is below the 1Gi an EBS volume can be");
    }
    // An EBS volume (and a bound claim) can only grow. The stack file records the sizes the volume
    // had, so a shrink is refused here, before anything is planned, not by the API server mid-update.
    const sizes = [...postgres.previousStorageSizes, postgres.storageSize];
    for (let i = 1; i < sizes.length; i++) {
        if (quantityBytes(sizes[i]) <= quantityBytes(sizes[i - 1])) {
            const isCurrent = i === sizes.length - 1;
            p.add(isCurrent ? "postgres.storageSize" : `postgres.previousStorageSizes[${i}]`, sizes[i],
                `is not larger than ${sizes[i - 1]}, the volume's previous size (postgres.previousStorageSizes); a volume can only grow (to shrink, restore a backup into a new stack)`);
        }
    }
    if (quantityBytes(postgres.resources.memoryLimit) < quantityBytes("256Mi")) {
        p.add("postgres.resources.memoryLimit", postgres.resources.memoryLimit, "is below the 256Mi PostgreSQL needs");
    } else if (postgres.maxConnections > maxConnectionsFor(postgres.resources.memoryLimit)) {
        p.add("postgres.maxConnections", postgres.maxConnections,
            `does not fit postgres.resources.memoryLimit ${postgres.resources.memoryLimit} (shared_buffers, maintenance_work_mem and ${WORK_MEM_FLOOR_MIB}MB of work_mem per connection): ` +
            `raise postgres.resources.memoryLimit (and memoryRequest) to at least ${memoryFor(postgres.maxConnections)}, or lower postgres.maxConnections to ${maxConnectionsFor(postgres.resources.memoryLimit)} or fewer`);
    }

    const b = section(p, "backup", raw.backup);
    noUnknownKeys(p, "backup", b, [
        "schedule", "timeZone", "retentionDays", "databases", "encryption", "objectLock", "objectLockDays",
        "verifySchedule", "verifySuspended", "scratchSize", "awsCliImageTag", "lockTimeout", "statementTimeout",
        "archiveTimeoutSeconds", "recoveryWindowDays", "baseBackupSchedule",
    ]);
    const cron = (key: string, v: unknown, def: string): string => {
        if (v === undefined) return def;
        const why = typeof v === "string" ? cronProblem(v) : "is not a string";
        if (why) {
            p.add(key, v, why);
            return def;
        }
        return v as string;
    };
    const timeZone = (key: string, v: unknown, def: string): string => {
        if (v === undefined) return def;
        const why = typeof v === "string" ? timeZoneProblem(v) : "is not a string";
        if (why) {
            p.add(key, v, why);
            return def;
        }
        return v as string;
    };
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

    const m = section(p, "mlflow", raw.mlflow);
    noUnknownKeys(p, "mlflow", m, [
        "namespace", "replicas", "workers", "databasePoolSize", "databaseMaxOverflow", "resources", "auth", "clientNamespaces",
        "exposure", "host", "ingressClassName", "ingressTlsSecretName", "tlsCertificateArn", "loadBalancerSourceRanges", "artifactEncryption",
    ]);
    const mlflowNamespace = str(p, "mlflow.namespace", m.namespace, "mlflow", isDns1123Label, "is not a DNS-1123 label (lowercase letters, digits, '-', at most 63)");
    const exposure = oneOf<MlflowExposure>(p, "mlflow.exposure", m.exposure, "none", ["none", "loadBalancer", "ingress"]);
    const optional = (key: string, v: unknown, test: (s: string) => boolean, allowed: string) => v === undefined ? undefined : str(p, `mlflow.${key}`, v, "", test, allowed) || undefined;
    const mlflow: MlflowConfig = {
        namespace: mlflowNamespace,
        replicas: int(p, "mlflow.replicas", m.replicas, 1, 1, 20),
        workers: int(p, "mlflow.workers", m.workers, 2, 1, 16),
        // Filled in below from postgres.maxConnections unless set.
        databasePoolSize: int(p, "mlflow.databasePoolSize", m.databasePoolSize, 0, 1, 100),
        databaseMaxOverflow: int(p, "mlflow.databaseMaxOverflow", m.databaseMaxOverflow, 0, 0, 100),
        resources: resources(p, "mlflow.resources", m.resources, { cpuRequest: "250m", memoryRequest: "1Gi", memoryLimit: "2Gi" }),
        // A login in prod by default, and whenever the server is reachable from outside the cluster.
        auth: bool(p, "mlflow.auth", m.auth, stack === "prod" || exposure !== "none"),
        clientNamespaces: list(p, "mlflow.clientNamespaces", m.clientNamespaces, [mlflowNamespace], isDns1123Label, "is not a namespace name (DNS-1123 label)"),
        exposure,
        host: optional("host", m.host, (v) => DNS_HOST.test(v), "is not a DNS host name (e.g. mlflow.example.com)"),
        ingressClassName: optional("ingressClassName", m.ingressClassName, isDns1123Label, "is not a DNS-1123 name"),
        ingressTlsSecretName: optional("ingressTlsSecretName", m.ingressTlsSecretName, isDns1123Label, "is not a Secret name (DNS-1123 label)"),
        tlsCertificateArn: optional("tlsCertificateArn", m.tlsCertificateArn, (v) => ACM_CERTIFICATE_ARN.test(v), "is not an ACM certificate ARN (arn:aws:acm:<region>:<account>:certificate/<id>)"),
        loadBalancerSourceRanges: list(p, "mlflow.loadBalancerSourceRanges", m.loadBalancerSourceRanges, [], isIpv4Cidr, "is not an IPv4 CIDR", 0),
        artifactEncryption: oneOf<BucketEncryption>(p, "mlflow.artifactEncryption", m.artifactEncryption, "aws:kms", ["aws:kms", "AES256"]),
    };
    if (postgres.namespace === mlflow.namespace) {
        p.add("mlflow.namespace", mlflow.namespace, `must differ from postgres.namespace so the database's NetworkPolicy can tell them apart`);
    }
    if (mlflow.exposure !== "none") {
        // Basic auth sends the password with every request: only over TLS, only with a login.
        if (!mlflow.auth) p.add("mlflow.auth", false, `must be true with mlflow.exposure ${mlflow.exposure}: the tracking server would be open to anyone who reaches it`);
        if (mlflow.host === undefined) p.add("mlflow.host", undefined, `is required with mlflow.exposure ${mlflow.exposure}: the DNS name users reach MLflow at, covered by the TLS certificate (it is also the only allowed Host and CORS origin)`);
    }
    if (mlflow.exposure === "loadBalancer") {
        if (mlflow.tlsCertificateArn === undefined) {
            p.add("mlflow.tlsCertificateArn", undefined, "is required with mlflow.exposure loadBalancer: an ACM certificate for mlflow.host, so the NLB terminates TLS and basic-auth passwords never cross the internet in clear text");
        }
        if (mlflow.loadBalancerSourceRanges.length === 0) {
            p.add("mlflow.loadBalancerSourceRanges", [], "must list the CIDRs allowed to reach a public MLflow load balancer");
        }
        if (mlflow.ingressClassName !== undefined || mlflow.ingressTlsSecretName !== undefined) {
            p.add("mlflow.exposure", mlflow.exposure, "does not use mlflow.ingressClassName or mlflow.ingressTlsSecretName (they are for exposure ingress)");
        }
    }
    if (mlflow.exposure === "ingress") {
        if (mlflow.ingressClassName === undefined) p.add("mlflow.ingressClassName", undefined, "is required with mlflow.exposure ingress (e.g. alb for the AWS Load Balancer Controller, nginx)");
        if ((mlflow.ingressTlsSecretName === undefined) === (mlflow.tlsCertificateArn === undefined)) {
            p.add("mlflow.exposure", mlflow.exposure, "needs exactly one TLS setting: mlflow.ingressTlsSecretName (a TLS Secret in the MLflow namespace, any controller) or mlflow.tlsCertificateArn (ACM, AWS Load Balancer Controller)");
        }
    }
    if (mlflow.exposure === "none") {
        for (const key of ["host", "ingressClassName", "ingressTlsSecretName", "tlsCertificateArn"] as const) {
            if (mlflow[key] !== undefined) p.add(`mlflow.${key}`, mlflow[key], "is only used with mlflow.exposure loadBalancer or ingress (exposure is none)");
        }
    }
    if (mlflow.replicas >= 2 && mlflow.replicas > cluster.nodeMinSize) {
        p.add("mlflow.replicas", mlflow.replicas, `exceeds cluster.nodeMinSize (${cluster.nodeMinSize}): each replica runs on a node of its own, so one node loss never takes them all`);
    }
    const fitting = defaultDatabasePool(mlflow, postgres.maxConnections);
    if (m.databasePoolSize === undefined) mlflow.databasePoolSize = fitting?.size ?? 1;
    if (m.databaseMaxOverflow === undefined) mlflow.databaseMaxOverflow = fitting?.overflow ?? 0;
    const peak = mlflowPeakConnections(mlflow);
    if (peak + reservedConnections() > postgres.maxConnections) {
        p.add(m.databasePoolSize === undefined && m.databaseMaxOverflow === undefined ? "mlflow.replicas" : "mlflow.databasePoolSize",
            m.databasePoolSize === undefined && m.databaseMaxOverflow === undefined ? mlflow.replicas : mlflow.databasePoolSize,
            `makes MLflow's peak ${peak} connections ((mlflow.replicas ${mlflow.replicas} + 1 during a rollout) x mlflow.workers ${mlflow.workers} x ${2 + (mlflow.auth ? 1 : 0)} engines x (databasePoolSize ${mlflow.databasePoolSize} + databaseMaxOverflow ${mlflow.databaseMaxOverflow})) plus ${reservedConnections()} reserved exceed postgres.maxConnections (${postgres.maxConnections}): lower mlflow.replicas, mlflow.workers, mlflow.databasePoolSize or mlflow.databaseMaxOverflow, or raise postgres.maxConnections`);
    }

    const monitoring = monitoringConfig(p, raw.monitoring, stack === "prod" ? "prod" : "dev");
    for (const ns of [postgres.namespace, mlflow.namespace]) {
        if (monitoring.mode !== "none" && monitoring.namespace === ns) {
            p.add("monitoring.namespace", monitoring.namespace, "must differ from postgres.namespace and mlflow.namespace (the database admits the scrape from this namespace only)");
        }
    }
    const alertReceiver = alertReceiverConfig(p, raw.alertReceiver, secretKeys.includes("alertReceiver"), monitoring.mode);

    if (p.list.length > 0) {
        throw new pulumi.RunError(`Invalid configuration for stack "${stack}":\n  - ${p.list.join("\n  - ")}`);
    }
    return { stack, region, awsProfile: awsProfile as string | undefined, protectData, allowDataLoss, cluster, storage, postgres, backup, mlflow, monitoring, alertReceiver };
}

const RETENTION = /^[1-9][0-9]*(h|d|w|y)$/;
const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

function monitoringConfig(p: Problems, v: unknown, size: "dev" | "prod"): MonitoringConfig {
    const o = section(p, "monitoring", v);
    noUnknownKeys(p, "monitoring", o, ["mode", "namespace", "selectorLabels", "retention", "storageSize", "resources", "runbookBaseUrl"]);
    const mode = oneOf<MonitoringMode>(p, "monitoring.mode", o.mode, "install", ["install", "existing", "none"]);
    let selectorLabels: Record<string, string> = { release: KPS_RELEASE_NAME };
    if (o.selectorLabels !== undefined) {
        if (mode !== "existing") {
            p.add("monitoring.selectorLabels", o.selectorLabels, `is only for mode existing (install uses the chart's own label release: ${KPS_RELEASE_NAME})`);
        } else {
            const labels = section(p, "monitoring.selectorLabels", o.selectorLabels);
            for (const [k, val] of Object.entries(labels)) {
                if (!LABEL_KEY.test(k)) p.add(`monitoring.selectorLabels.${k}`, val, "has a key that is not a Kubernetes label name");
                else if (typeof val !== "string" || !LABEL_VALUE.test(val)) p.add(`monitoring.selectorLabels.${k}`, val, "is not a Kubernetes label value (at most 63 letters, digits, '-', '_', '.')");
            }
            if (Object.keys(labels).length > 0) selectorLabels = labels as Record<string, string>;
        }
    } else if (mode === "existing") {
        p.add("monitoring.selectorLabels", undefined, "is required with mode existing: the labels your Prometheus's ruleSelector, podMonitorSelector and serviceMonitorSelector match (e.g. {release: kube-prometheus-stack})");
    }
    const installOnly = ["retention", "storageSize", "resources"].filter((k) => o[k] !== undefined);
    if (mode !== "install" && installOnly.length > 0) {
        p.add(`monitoring.${installOnly[0]}`, o[installOnly[0]], `is only for mode install (${installOnly.join(", ")} size the Prometheus this program installs)`);
    }
    const storageSize = str(p, "monitoring.storageSize", o.storageSize, size === "prod" ? "100Gi" : "20Gi", isBinaryQuantity, "is not a Kubernetes quantity (e.g. 50Gi)");
    if (isBinaryQuantity(storageSize) && quantityBytes(storageSize) < quantityBytes("2Gi")) {
        p.add("monitoring.storageSize", storageSize, "is below the 2Gi Prometheus needs for a day of the platform's metrics");
    }
    return {
        mode,
        namespace: str(p, "monitoring.namespace", o.namespace, "monitoring", isDns1123Label, "is not a DNS-1123 label (lowercase letters, digits, '-', at most 63)"),
        selectorLabels,
        retention: str(p, "monitoring.retention", o.retention, size === "prod" ? "30d" : "7d", (x) => RETENTION.test(x), "is not a Prometheus retention (a whole number of h, d, w or y, e.g. 15d)"),
        storageSize,
        resources: resources(p, "monitoring.resources", o.resources, size === "prod"
            ? { cpuRequest: "500m", memoryRequest: "2Gi", memoryLimit: "4Gi" }
            : { cpuRequest: "200m", memoryRequest: "1Gi", memoryLimit: "1Gi" }),
        runbookBaseUrl: str(p, "monitoring.runbookBaseUrl", o.runbookBaseUrl, "README.md", (x) => x === "README.md" || /^https:\/\/[^\s#]+$/.test(x), "is not an https URL without a #fragment (where your README is rendered, e.g. https://github.com/acme/platform/blob/main/README.md)"),
    };
}

/**
 * The alert receiver, a secret: its problems are reported without its value, and a value that is
 * not a Pulumi secret is refused (it would sit in plaintext in the stack file).
 */
function alertReceiverConfig(p: Problems, v: unknown, isSecret: boolean, mode: MonitoringMode): AlertReceiver | undefined {
    if (v === undefined) return undefined;
    const hidden = "[secret]";
    const bad = (key: string, allowed: string) => p.list.push(`${key}: ${hidden} ${allowed}`);
    if (!isSecret) {
        bad("alertReceiver", "must be a secret: pulumi config set --secret alertReceiver '<json>' (see README, Alerting)");
        return undefined;
    }
    if (mode !== "install") {
        bad("alertReceiver", `is only for monitoring.mode install (with ${mode}, alert routing belongs to whoever runs Alertmanager)`);
        return undefined;
    }
    if (v === null || typeof v !== "object" || Array.isArray(v)) {
        bad("alertReceiver", "is not a JSON object such as {\"type\":\"slack\",\"url\":\"https://hooks.slack.com/services/...\"}");
        return undefined;
    }
    const o = v as Obj;
    const known = ["type", "url", "channel", "routingKey"];
    for (const k of Object.keys(o)) if (!known.includes(k)) bad(`alertReceiver.${k}`, `is not a known setting (known: ${known.join(", ")})`);
    const type = o.type;
    if (type !== "slack" && type !== "pagerduty" && type !== "webhook") {
        p.add("alertReceiver.type", type, "is not one of slack, pagerduty, webhook");
        return undefined;
    }
    const https = (x: unknown) => typeof x === "string" && /^https:\/\/[^\s]+$/.test(x);
    if (type === "pagerduty") {
        if (typeof o.routingKey !== "string" || !/^[A-Za-z0-9]{32}$/.test(o.routingKey)) bad("alertReceiver.routingKey", "is not a PagerDuty Events API v2 integration key (32 letters and digits)");
        if (o.url !== undefined || o.channel !== undefined) bad("alertReceiver", "of type pagerduty takes routingKey only");
        return { type, routingKey: o.routingKey as string };
    }
    if (!https(o.url)) bad("alertReceiver.url", "is not an https URL");
    if (type === "slack" && typeof o.url === "string" && !o.url.startsWith("https://hooks.slack.com/")) bad("alertReceiver.url", "is not a Slack incoming-webhook URL (https://hooks.slack.com/...)");
    if (o.routingKey !== undefined) bad("alertReceiver.routingKey", `is only for type pagerduty`);
    if (o.channel !== undefined && (type !== "slack" || typeof o.channel !== "string" || !/^[#@][^\s]+$/.test(o.channel))) p.add("alertReceiver.channel", o.channel, "is a Slack channel (#name) and only for type slack");
    return { type, url: o.url as string, ...(typeof o.channel === "string" ? { channel: o.channel } : {}) };
}

/**
 * Every key of the project's namespace as the CLI passes config (strings; objects and scalars as
 * JSON), parsed where it is JSON and kept as the string it is otherwise, so that a bad value
 * (`protectData: "yes"`) is reported with the rest instead of as the SDK's JSON parse error.
 */
export function rawConfigFrom(all: Record<string, string>, project: string): RawConfig {
    const raw: RawConfig = { region: all["aws:region"], awsProfile: all["aws:profile"] };
    const prefix = `${project}:`;
    for (const [key, text] of Object.entries(all)) {
        if (!key.startsWith(prefix)) continue;
        // Keys that would shadow the aws: ones keep their namespace, and are reported as unknown.
        const name = key === `${prefix}region` || key === `${prefix}awsProfile` ? key : key.slice(prefix.length);
        let value: unknown = text;
        try {
            value = JSON.parse(text);
        } catch {
            // a plain string
        }
        raw[name] = value;
    }
    return raw;
}

/**
 * Whether the engine passed a key as a secret. The SDK's own Config uses this function; it is
 * marked internal, so it is reached through the module that defines it (runtime/config.js).
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { isConfigSecret } = require("@pulumi/pulumi/runtime/config") as { isConfigSecret(key: string): boolean };

/** Reads the current stack's configuration and validates it. */
export function loadConfig(): PlatformConfig {
    const project = pulumi.getProject();
    const secretKeys = SECRET_KEYS.filter((k) => isConfigSecret(`${project}:${k}`));
    return validateConfig(pulumi.getStack(), rawConfigFrom(pulumi.runtime.allConfig(), project), secretKeys);
}
