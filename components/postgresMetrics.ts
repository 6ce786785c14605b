import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { DatabaseRole } from "./databaseRoles";
import { POSTGRES_PORT, PostgresPodExtras, roleSecretName } from "./postgres";

/**
 * The exporter's database role: pg_monitor (read every statistics view and pg_settings, no table
 * data) and CONNECT to the maintenance database only. Created and kept in shape on new and
 * existing databases by the Postgres component's role reconcile Job.
 */
export const METRICS_ROLE: DatabaseRole = { name: "metrics", memberOf: ["pg_monitor"], connect: ["postgres"] };

/**
 * prometheus-community's postgres_exporter, pinned. The metric names the alerts and dashboards use
 * exist in this release and in Debian's 0.11.1, which the real test runs (see
 * test/postgres-exporter.real.test.ts).
 */
export const EXPORTER_IMAGE = "quay.io/prometheuscommunity/postgres-exporter:v0.20.1";
export const EXPORTER_CONTAINER = "postgres-exporter";
export const EXPORTER_PORT = 9187;
const PORT_NAME = "metrics";

/**
 * How the sidecar reaches PostgreSQL: over loopback inside the pod (the container shares the pod's
 * network), so no connection ever leaves it. The exporter builds its DSN from these (its
 * GetDataSources: postgresql://<user>:<pass>@<DATA_SOURCE_URI>, user and password URL-escaped).
 * sslmode=disable: loopback only, and the official image serves no TLS.
 */
export function exporterEnv(secretName: string, port: number = POSTGRES_PORT): k8s.types.input.core.v1.EnvVar[] {
    return [
        { name: "DATA_SOURCE_URI", value: `127.0.0.1:${port}/postgres?sslmode=disable` },
        { name: "DATA_SOURCE_USER", valueFrom: { secretKeyRef: { name: secretName, key: "username" } } },
        { name: "DATA_SOURCE_PASS", valueFrom: { secretKeyRef: { name: secretName, key: "password" } } },
    ];
}

/** Command-line flags of the sidecar; the real test starts Debian's exporter with the same ones. */
export const EXPORTER_ARGS = [`--web.listen-address=:${EXPORTER_PORT}`, "--log.level=warn"];

export interface PostgresExporterOptions {
    /** The namespace Prometheus scrapes from; the only one the NetworkPolicy lets in. */
    monitoringNamespace: string;
}

/**
 * What the metrics exporter adds to the database pod: the sidecar and the NetworkPolicy rule that
 * admits the scrape from the monitoring namespace, on the metrics port only.
 */
export function postgresExporterExtras(opts: PostgresExporterOptions): PostgresPodExtras {
    return {
        containers: [{
            name: EXPORTER_CONTAINER,
            image: EXPORTER_IMAGE,
            args: EXPORTER_ARGS,
            env: exporterEnv(roleSecretName(METRICS_ROLE.name)),
            ports: [{ name: PORT_NAME, containerPort: EXPORTER_PORT, protocol: "TCP" }],
            resources: { requests: { cpu: "10m", memory: "32Mi" }, limits: { memory: "128Mi" } },
            securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                capabilities: { drop: ["ALL"] },
            },
            // The exporter answers even when PostgreSQL does not (pg_up 0): probes watch the
            // exporter itself, so a database outage never restarts it.
            readinessProbe: { httpGet: { path: "/", port: PORT_NAME }, periodSeconds: 10, timeoutSeconds: 5 },
            livenessProbe: { httpGet: { path: "/", port: PORT_NAME }, periodSeconds: 30, timeoutSeconds: 5, failureThreshold: 4 },
        }],
        ingress: [{
            from: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": opts.monitoringNamespace } } }],
            ports: [{ protocol: "TCP", port: EXPORTER_PORT }],
        }],
    };
}

export interface PostgresMetricsArgs {
    /** The database's namespace (the Postgres component's output, so the PodMonitor waits for it). */
    namespace: pulumi.Input<string>;
    /** The database pod's labels. */
    podLabels: Record<string, string>;
    /** Labels the Prometheus's podMonitorSelector matches. */
    selectorLabels: Record<string, string>;
    /** What installs the PodMonitor CRD, when this program does (the monitoring release). */
    crds?: pulumi.Resource;
}

/** The PodMonitor through which Prometheus scrapes the exporter sidecar. */
export class PostgresMetrics extends pulumi.ComponentResource {
    public readonly podMonitorName: pulumi.Output<string>;

    constructor(name: string, args: PostgresMetricsArgs, opts?: pulumi.ComponentResourceOptions) {
        super("platform:index:PostgresMetrics", name, {}, opts);
        const monitor = new k8s.apiextensions.CustomResource(`${name}-podmonitor`, {
            apiVersion: "monitoring.coreos.com/v1",
            kind: "PodMonitor",
            metadata: { name: "postgres", namespace: args.namespace, labels: args.selectorLabels },
            spec: {
                selector: { matchLabels: args.podLabels },
                podMetricsEndpoints: [{ port: PORT_NAME, path: "/metrics", interval: "30s", scrapeTimeout: "10s" }],
            },
        }, { parent: this, dependsOn: args.crds ? [args.crds] : [] });
        this.podMonitorName = monitor.metadata.name;
        this.registerOutputs({ podMonitorName: this.podMonitorName });
    }
}
