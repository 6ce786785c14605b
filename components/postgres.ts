import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { quantityBytes, ResourceSpec } from "../config";
import { sha256, shellScripts } from "./assets";
import { DatabaseRole, POSTGRES_SCRIPTS_DIR, RoleReconcile, ROLE_RECONCILE_POD_LABELS, validateRoles } from "./databaseRoles";

export { DatabaseRole } from "./databaseRoles";

/** Pods allowed to reach PostgreSQL: a namespace and the labels its pods carry. */
export interface PostgresClient {
    namespace: pulumi.Input<string>;
    podLabels: Record<string, string>;
}

export interface PostgresArgs {
    /** Namespace created for the database; part of its DNS name, so fixed. */
    namespace: string;
    /** Official postgres image tag, MAJOR.MINOR. */
    imageTag: string;
    storageClassName: pulumi.Input<string>;
    /** The data volume's size now: growing it expands the live claim online (see volumeTemplateSize). */
    storageSize: string;
    /**
     * Sizes the volume had before, oldest first. The first is what the StatefulSet was created
     * with, and its volumeClaimTemplate keeps it: that field forces a replacement.
     */
    previousStorageSizes?: string[];
    resources: ResourceSpec;
    maxConnections: number;
    /** Who may connect to port 5432; everyone else is refused by a NetworkPolicy. */
    clients: PostgresClient[];
    /** Prod: refuse to delete what holds data or the passwords that open it. */
    protectData: boolean;
    /** What other components add to the database pod, each concern staying in its own file. */
    podExtras?: PostgresPodExtras[];
    /** Roles other components need (metrics, base backups); kept in step by the role reconcile Job. */
    extraRoles?: DatabaseRole[];
}

/**
 * Name of the Secret (keys username, password) of an extra database role (PostgresArgs.extraRoles).
 * Fixed, so components built before the StatefulSet (pod extras such as the metrics exporter) can
 * refer to it.
 */
export function roleSecretName(role: string): string {
    return `postgres-role-${role.replace(/_/g, "-")}`;
}

/**
 * Additions to the database pod from other components (WAL archiving, the metrics exporter).
 * Plain inputs, so those components can be built before the StatefulSet that carries them.
 */
export interface PostgresPodExtras {
    /** Containers beside postgres (sidecars). */
    containers?: k8s.types.input.core.v1.Container[];
    /** Init containers, run before postgres starts (e.g. copying a tool into a shared volume). */
    initContainers?: k8s.types.input.core.v1.Container[];
    volumes?: k8s.types.input.core.v1.Volume[];
    /** Extra environment and mounts of the postgres container itself. */
    env?: k8s.types.input.core.v1.EnvVar[];
    volumeMounts?: k8s.types.input.core.v1.VolumeMount[];
    /** The pod's ServiceAccount (IRSA). At most one extra may set it; without one no token is mounted. */
    serviceAccountName?: string;
    /** postgresql.conf settings (name -> value as written in the file) beside the sized defaults. */
    settings?: [string, string][];
    /** NetworkPolicy ingress rules beside the database clients' rule (e.g. a metrics scrape). */
    ingress?: k8s.types.input.networking.v1.NetworkPolicyIngressRule[];
    /**
     * Objects in the database namespace the pod needs before it starts (its ServiceAccount, a
     * ConfigMap it mounts): made by the extra's own component once the namespace exists; the
     * StatefulSet waits for them.
     */
    namespaced?: (namespace: pulumi.Output<string>) => pulumi.Resource[];
}

/** The official postgres image at a MAJOR.MINOR tag: the server's image, and its jobs'. */
export function postgresImage(imageTag: string): string {
    return `public.ecr.aws/docker/library/postgres:${imageTag}`;
}

/** Merges the extras of several components; a setting or ServiceAccount given twice is a bug. */
export function mergePodExtras(extras: PostgresPodExtras[]): Required<Omit<PostgresPodExtras, "serviceAccountName">> & { serviceAccountName?: string } {
    const accounts = extras.map((e) => e.serviceAccountName).filter((n): n is string => n !== undefined);
    if (accounts.length > 1) throw new Error(`two components set the database pod's ServiceAccount: ${accounts.join(", ")}`);
    const settings = extras.flatMap((e) => e.settings ?? []);
    const names = settings.map(([k]) => k);
    const twice = names.filter((k, i) => names.indexOf(k) !== i);
    if (twice.length > 0) throw new Error(`postgresql.conf settings given twice: ${twice.join(", ")}`);
    return {
        containers: extras.flatMap((e) => e.containers ?? []),
        initContainers: extras.flatMap((e) => e.initContainers ?? []),
        volumes: extras.flatMap((e) => e.volumes ?? []),
        env: extras.flatMap((e) => e.env ?? []),
        volumeMounts: extras.flatMap((e) => e.volumeMounts ?? []),
        serviceAccountName: accounts[0],
        settings,
        ingress: extras.flatMap((e) => e.ingress ?? []),
        namespaced: (namespace) => extras.flatMap((e) => e.namespaced?.(namespace) ?? []),
    };
}

export const POSTGRES_PORT = 5432;
const STATEFULSET_NAME = "postgres";
const HEADLESS_SERVICE_NAME = "postgres-headless";
const CLIENT_SERVICE_NAME = "postgres";
const DATA_MOUNT = "/var/lib/postgresql/data";
const DATA_VOLUME = "data";
/** The primary's claim, as the StatefulSet controller names it: <template>-<statefulset>-<ordinal>. */
export const DATA_CLAIM_NAME = `${DATA_VOLUME}-${STATEFULSET_NAME}-0`;
/**
 * The template's size field. The Kubernetes provider replaces a StatefulSet when anything under
 * .spec.volumeClaimTemplates changes (pulumi-kubernetes provider/pkg/provider/diff.go, the
 * `statefulSet` forceNew list); the API server also refuses to update it in place.
 */
export const TEMPLATE_SIZE_PATH = "spec.volumeClaimTemplates[0].spec.resources.requests.storage";
/** The claim patch's field manager: fixed, so any operator's `pulumi up` owns the same fields. */
const RESIZE_FIELD_MANAGER = "platform-postgres-volume-size";
export const MLFLOW_DATABASE = "mlflow";
export const MLFLOW_DB_USER = "mlflow";
/** MLflow's user store when authentication is on; owned by the mlflow role like its main database. */
export const MLFLOW_AUTH_DATABASE = "mlflow_auth";
export const BACKUP_DB_USER = "backup";
export const SUPERUSER = "postgres";

const MiB = 1024 * 1024;

/**
 * postgresql.conf sized to the container's memory limit. Values follow the usual guidance for a
 * dedicated server (shared_buffers a quarter of memory, the cache estimate most of the rest)
 * scaled down to what the cgroup allows, so PostgreSQL is never OOM-killed by its own settings.
 */
export function postgresConf(memoryLimit: string, maxConnections: number, extra: [string, string][] = []): string {
    const mem = quantityBytes(memoryLimit);
    const mb = (bytes: number) => `${Math.max(1, Math.floor(bytes / MiB))}MB`;
    const sharedBuffers = mem / 4;
    // Each connection may use work_mem several times over (sorts, hashes): budget 3 per connection.
    const workMem = Math.max(4 * MiB, (mem - sharedBuffers) / (maxConnections * 3));
    const maintenanceWorkMem = Math.min(1024 * MiB, Math.max(64 * MiB, mem / 16));
    const settings: [string, string][] = [
        ["listen_addresses", "'*'"],
        ["port", String(POSTGRES_PORT)],
        ["max_connections", String(maxConnections)],
        ["shared_buffers", mb(sharedBuffers)],
        ["effective_cache_size", mb((mem * 3) / 4)],
        ["work_mem", mb(workMem)],
        ["maintenance_work_mem", mb(maintenanceWorkMem)],
        // Huge pages on a shared node fail in surprising ways inside a cgroup.
        ["huge_pages", "off"],
        ["password_encryption", "'scram-sha-256'"],
        ["wal_level", "replica"],
        ["max_wal_size", "'2GB'"],
        ["min_wal_size", "'256MB'"],
        ["checkpoint_completion_target", "0.9"],
        ["random_page_cost", "1.1"],
        ["effective_io_concurrency", "200"],
        ["log_destination", "'stderr'"],
        ["log_min_duration_statement", "'1s'"],
        ["log_checkpoints", "on"],
        ["log_lock_waits", "on"],
        ["log_temp_files", "0"],
        ["log_timezone", "'UTC'"],
        ["timezone", "'UTC'"],
    ];
    const clash = extra.filter(([k]) => settings.some(([own]) => own === k)).map(([k]) => k);
    if (clash.length > 0) throw new Error(`postgresql.conf settings already sized here: ${clash.join(", ")}`);
    return [...settings, ...extra].map(([k, v]) => `${k} = ${v}`).join("\n") + "\n";
}

/** The size the StatefulSet's volumeClaimTemplate was created with (the first size ever set). */
export function volumeTemplateSize(args: Pick<PostgresArgs, "storageSize" | "previousStorageSizes">): string {
    return args.previousStorageSizes?.[0] ?? args.storageSize;
}


/**
 * A single-primary PostgreSQL: a StatefulSet of one pod on its own EBS volume, reached through a
 * headless Service at a stable DNS name. Credentials are generated here and live only in
 * Kubernetes Secrets and (encrypted) Pulumi state.
 */
export class Postgres extends pulumi.ComponentResource {
    public readonly namespace: pulumi.Output<string>;
    /** DNS name of the primary pod: <statefulset>-0.<headless>.<namespace>.svc.cluster.local. */
    public readonly primaryHost: pulumi.Output<string>;
    /** DNS name of the ClusterIP Service for clients. */
    public readonly serviceHost: pulumi.Output<string>;
    public readonly port: pulumi.Output<number>;
    public readonly databaseName: pulumi.Output<string>;
    public readonly authDatabaseName: pulumi.Output<string>;
    public readonly mlflowUsername: pulumi.Output<string>;
    public readonly mlflowPassword: pulumi.Output<string>;
    /** Secrets in the database namespace: keys username and password. */
    public readonly superuserSecretName: pulumi.Output<string>;
    public readonly backupSecretName: pulumi.Output<string>;
    public readonly mlflowSecretName: pulumi.Output<string>;
    public readonly statefulSet: k8s.apps.v1.StatefulSet;
    /**
     * Succeeds once every role, database, password and grant matches the program: what clients of
     * the database (MLflow) wait for, so a rotated password reaches PostgreSQL before they use it.
     */
    public readonly rolesReconciled: k8s.batch.v1.Job;
    /** Sets the size of the primary's claim; growing it is an online EBS expansion. */
    public readonly dataClaimSize: k8s.core.v1.PersistentVolumeClaimPatch;
    public readonly statefulSetName: pulumi.Output<string>;
    /** The server's image: backup jobs use the same one so pg_dump matches the server. */
    public readonly image: string;
    public readonly podLabels: Record<string, string>;

    constructor(name: string, args: PostgresArgs, opts?: pulumi.ComponentResourceOptions) {
        super("platform:index:Postgres", name, {}, opts);
        const dataOpts = { parent: this, protect: args.protectData };

        const ns = new k8s.core.v1.Namespace(`${name}-ns`, {
            metadata: {
                name: args.namespace,
                // Every pod here (database, backups) runs under the restricted Pod Security Standard.
                labels: { "pod-security.kubernetes.io/enforce": "restricted" },
            },
        }, dataOpts);
        const namespace = ns.metadata.name;

        // Letters and digits only: MLflow puts the password into a SQLAlchemy URL unescaped.
        const password = (role: string) => new random.RandomPassword(`${name}-${role}-password`, { length: 32, special: false }, dataOpts).result;
        const secret = (role: string, username: string, pw: pulumi.Output<string>) => new k8s.core.v1.Secret(`${name}-${role}`, {
            metadata: { namespace, labels: { "app.kubernetes.io/name": "postgres", "app.kubernetes.io/instance": name } },
            type: "Opaque",
            stringData: { username, password: pw },
        }, dataOpts);
        this.mlflowPassword = password("mlflow");
        const superuser = secret("superuser", SUPERUSER, password("superuser"));
        const mlflowSecret = secret("mlflow", MLFLOW_DB_USER, this.mlflowPassword);
        const backupPassword = password("backup");
        const backupSecret = secret("backup", BACKUP_DB_USER, backupPassword);

        const extraRoles = args.extraRoles ?? [];
        validateRoles(extraRoles);
        const rolePasswords = extraRoles.map((r) => password(`role-${r.name}`));
        const roleSecrets = extraRoles.map((r, i) => new k8s.core.v1.Secret(`${name}-role-${r.name}`, {
            metadata: {
                // Fixed: components built before this one (pod extras) refer to it by name.
                name: roleSecretName(r.name),
                namespace,
                labels: { "app.kubernetes.io/name": "postgres", "app.kubernetes.io/instance": name },
            },
            type: "Opaque",
            stringData: { username: r.name, password: rolePasswords[i] },
        }, dataOpts));

        this.image = postgresImage(args.imageTag);
        this.podLabels = {
            "app.kubernetes.io/name": "postgres",
            "app.kubernetes.io/instance": name,
            "app.kubernetes.io/component": "database",
        };

        const extras = mergePodExtras(args.podExtras ?? []);
        const prerequisites = extras.namespaced(namespace);
        const conf = postgresConf(args.resources.memoryLimit, args.maxConnections, extras.settings);
        const initScript = shellScripts(POSTGRES_SCRIPTS_DIR)["init-db.sh"];
        const config = new k8s.core.v1.ConfigMap(`${name}-config`, {
            metadata: { namespace },
            data: { "postgresql.conf": conf },
        }, { parent: this });
        const init = new k8s.core.v1.ConfigMap(`${name}-initdb`, {
            metadata: { namespace },
            data: { "10-mlflow-and-backup-roles.sh": initScript },
        }, { parent: this });

        const headless = new k8s.core.v1.Service(`${name}-headless`, {
            metadata: { name: HEADLESS_SERVICE_NAME, namespace, labels: this.podLabels },
            spec: {
                clusterIP: "None",
                // DNS records exist while the pod is starting, so clients and backups resolve the name
                // and fail on connect (retryable) rather than on lookup.
                publishNotReadyAddresses: true,
                selector: this.podLabels,
                ports: [{ name: "postgres", port: POSTGRES_PORT, targetPort: "postgres" }],
            },
        }, { parent: this });
        const client = new k8s.core.v1.Service(`${name}-client`, {
            metadata: { name: CLIENT_SERVICE_NAME, namespace, labels: this.podLabels },
            spec: {
                type: "ClusterIP",
                selector: this.podLabels,
                ports: [{ name: "postgres", port: POSTGRES_PORT, targetPort: "postgres" }],
            },
        }, { parent: this });

        const envFromSecret = (envName: string, s: k8s.core.v1.Secret, key: string) => ({
            name: envName,
            valueFrom: { secretKeyRef: { name: s.metadata.name, key } },
        });
        // What init-db.sh needs, in the pod (first init) and in the role reconcile Job (every update).
        const coreEnv = [
            { name: "MLFLOW_DB_NAME", value: MLFLOW_DATABASE },
            { name: "MLFLOW_AUTH_DB_NAME", value: MLFLOW_AUTH_DATABASE },
            envFromSecret("MLFLOW_DB_USER", mlflowSecret, "username"),
            envFromSecret("MLFLOW_DB_PASSWORD", mlflowSecret, "password"),
            envFromSecret("BACKUP_DB_USER", backupSecret, "username"),
            envFromSecret("BACKUP_DB_PASSWORD", backupSecret, "password"),
        ];
        const pgIsReady = ["/bin/sh", "-c", `exec pg_isready -U "$POSTGRES_USER" -d postgres -h 127.0.0.1 -p ${POSTGRES_PORT}`];

        this.statefulSet = new k8s.apps.v1.StatefulSet(`${name}-statefulset`, {
            metadata: { name: STATEFULSET_NAME, namespace, labels: this.podLabels },
            spec: {
                serviceName: headless.metadata.name,
                // One primary. Scaling a StatefulSet does not make PostgreSQL replicas: each pod would
                // be an independent, empty database. Replication needs an operator (see README).
                replicas: 1,
                selector: { matchLabels: this.podLabels },
                persistentVolumeClaimRetentionPolicy: {
                    whenDeleted: args.protectData ? "Retain" : "Delete",
                    whenScaled: "Retain",
                },
                template: {
                    metadata: {
                        labels: this.podLabels,
                        // A settings change rolls the pod; a ConfigMap alone would not.
                        annotations: { "platform/config-sha256": sha256(conf + initScript) },
                    },
                    spec: {
                        // A token only for a component that needs one (IRSA for WAL archiving).
                        ...(extras.serviceAccountName !== undefined
                            ? { serviceAccountName: extras.serviceAccountName, automountServiceAccountToken: true }
                            : { automountServiceAccountToken: false }),
                        enableServiceLinks: false,
                        // Long enough for a fast shutdown with a checkpoint on a busy database.
                        terminationGracePeriodSeconds: 120,
                        securityContext: {
                            runAsUser: 999,
                            runAsGroup: 999,
                            fsGroup: 999,
                            fsGroupChangePolicy: "OnRootMismatch",
                            runAsNonRoot: true,
                            seccompProfile: { type: "RuntimeDefault" },
                        },
                        ...(extras.initContainers.length > 0 ? { initContainers: extras.initContainers } : {}),
                        containers: [{
                            name: "postgres",
                            image: this.image,
                            args: ["-c", "config_file=/etc/postgresql/postgresql.conf"],
                            ports: [{ name: "postgres", containerPort: POSTGRES_PORT, protocol: "TCP" }],
                            env: [
                                envFromSecret("POSTGRES_USER", superuser, "username"),
                                envFromSecret("POSTGRES_PASSWORD", superuser, "password"),
                                { name: "POSTGRES_DB", value: "postgres" },
                                // A volume's root holds lost+found, and initdb refuses a non-empty directory.
                                { name: "PGDATA", value: `${DATA_MOUNT}/pgdata` },
                                ...coreEnv,
                                ...extras.env,
                            ],
                            resources: {
                                requests: { cpu: args.resources.cpuRequest, memory: args.resources.memoryRequest },
                                limits: {
                                    memory: args.resources.memoryLimit,
                                    ...(args.resources.cpuLimit ? { cpu: args.resources.cpuLimit } : {}),
                                },
                            },
                            securityContext: {
                                allowPrivilegeEscalation: false,
                                readOnlyRootFilesystem: true,
                                capabilities: { drop: ["ALL"] },
                            },
                            // Crash recovery after an unclean stop can take long: up to an hour before
                            // liveness may restart the container.
                            startupProbe: { exec: { command: pgIsReady }, periodSeconds: 10, failureThreshold: 360, timeoutSeconds: 5 },
                            readinessProbe: { exec: { command: pgIsReady }, periodSeconds: 5, failureThreshold: 3, timeoutSeconds: 5 },
                            livenessProbe: { exec: { command: pgIsReady }, periodSeconds: 10, failureThreshold: 6, timeoutSeconds: 5 },
                            lifecycle: {
                                // Kubernetes sends SIGTERM, which PostgreSQL treats as a "smart" shutdown that
                                // waits for every client (MLflow's pool never leaves) until SIGKILL forces
                                // crash recovery. A fast shutdown disconnects clients and checkpoints cleanly.
                                preStop: { exec: { command: ["/bin/sh", "-c", "exec pg_ctl stop -D \"$PGDATA\" -m fast -w -t 100"] } },
                            },
                            volumeMounts: [
                                { name: DATA_VOLUME, mountPath: DATA_MOUNT },
                                { name: "config", mountPath: "/etc/postgresql", readOnly: true },
                                { name: "initdb", mountPath: "/docker-entrypoint-initdb.d", readOnly: true },
                                { name: "run", mountPath: "/var/run/postgresql" },
                                { name: "tmp", mountPath: "/tmp" },
                                // Parallel queries use /dev/shm; a container's default is 64 MB.
                                { name: "dshm", mountPath: "/dev/shm" },
                                ...extras.volumeMounts,
                            ],
                        }, ...extras.containers],
                        volumes: [
                            { name: "config", configMap: { name: config.metadata.name } },
                            { name: "initdb", configMap: { name: init.metadata.name } },
                            { name: "run", emptyDir: {} },
                            { name: "tmp", emptyDir: {} },
                            { name: "dshm", emptyDir: { medium: "Memory", sizeLimit: "256Mi" } },
                            ...extras.volumes,
                        ],
                    },
                },
                volumeClaimTemplates: [{
                    metadata: { name: DATA_VOLUME, labels: this.podLabels },
                    spec: {
                        accessModes: ["ReadWriteOnce"],
                        storageClassName: args.storageClassName,
                        // The size the StatefulSet was created with, for ever: a resize changes the
                        // claim (below), never this template, which would replace the StatefulSet.
                        resources: { requests: { storage: volumeTemplateSize(args) } },
                    },
                }],
            },
        }, {
            ...dataOpts,
            // Pod extras refer to the extra roles' Secrets by their fixed names (the metrics sidecar's
            // env): they must exist before the pod, or its containers fail to start.
            dependsOn: [...roleSecrets, ...prerequisites],
            // A safety net for a resize that does not record the old size in previousStorageSizes:
            // the template in state keeps its first size instead of forcing a replacement.
            ignoreChanges: [TEMPLATE_SIZE_PATH],
        });

        // Growing the disk: server-side apply of the claim's size only. The EBS CSI driver expands the
        // volume and then the mounted ext4 filesystem while PostgreSQL runs. The claim exists once
        // the StatefulSet is ready (its await waits for the pod), and must: applying to a missing
        // claim would create one. Forced, because the StatefulSet controller wrote the size first.
        this.dataClaimSize = new k8s.core.v1.PersistentVolumeClaimPatch(`${name}-data-size`, {
            metadata: {
                name: DATA_CLAIM_NAME,
                namespace,
                annotations: {
                    "pulumi.com/patchForce": "true",
                    "pulumi.com/patchFieldManager": RESIZE_FIELD_MANAGER,
                },
            },
            spec: { resources: { requests: { storage: args.storageSize } } },
        }, {
            parent: this,
            dependsOn: [this.statefulSet],
            // Deleting a Patch relinquishes its fields (provider/pkg/ssa/actions.go Relinquish), which
            // would leave the claim without a size request. The claim keeps the size it has.
            retainOnDelete: true,
        });

        new k8s.networking.v1.NetworkPolicy(`${name}-ingress`, {
            metadata: { namespace },
            spec: {
                podSelector: { matchLabels: this.podLabels },
                policyTypes: ["Ingress"],
                ingress: [{
                    from: [...args.clients, { namespace, podLabels: ROLE_RECONCILE_POD_LABELS }].map((c) => ({
                        namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": c.namespace } },
                        podSelector: { matchLabels: c.podLabels },
                    })),
                    ports: [{ protocol: "TCP", port: POSTGRES_PORT }],
                }, ...extras.ingress],
            },
        }, { parent: this });

        this.primaryHost = pulumi.interpolate`${this.statefulSet.metadata.name}-0.${headless.metadata.name}.${namespace}.svc.cluster.local`;
        const reconcile = new RoleReconcile(`${name}-roles`, {
            namespace,
            image: this.image,
            host: this.primaryHost,
            port: POSTGRES_PORT,
            superuserSecretName: superuser.metadata.name,
            coreEnv,
            roles: extraRoles,
            roleSecretNames: Object.fromEntries(extraRoles.map((r, i) => [r.name, roleSecrets[i].metadata.name])),
            passwords: [this.mlflowPassword, backupPassword, ...rolePasswords],
        }, { parent: this, dependsOn: [this.statefulSet, ...roleSecrets, mlflowSecret, backupSecret] });
        this.rolesReconciled = reconcile.job;

        this.namespace = namespace;
        this.statefulSetName = this.statefulSet.metadata.name;
        this.serviceHost = pulumi.interpolate`${client.metadata.name}.${namespace}.svc.cluster.local`;
        this.port = pulumi.output(POSTGRES_PORT);
        this.databaseName = pulumi.output(MLFLOW_DATABASE);
        this.authDatabaseName = pulumi.output(MLFLOW_AUTH_DATABASE);
        this.mlflowUsername = pulumi.output(MLFLOW_DB_USER);
        this.superuserSecretName = superuser.metadata.name;
        this.backupSecretName = backupSecret.metadata.name;
        this.mlflowSecretName = mlflowSecret.metadata.name;
        this.registerOutputs({
            namespace: this.namespace,
            primaryHost: this.primaryHost,
            serviceHost: this.serviceHost,
            port: this.port,
            databaseName: this.databaseName,
            superuserSecretName: this.superuserSecretName,
            backupSecretName: this.backupSecretName,
            mlflowSecretName: this.mlflowSecretName,
        });
    }
}
