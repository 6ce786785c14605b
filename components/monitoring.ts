import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import YAML from "yaml";
import { AlertReceiver, KPS_RELEASE_NAME, quantityBytes, ResourceSpec } from "../config";

export const KPS_CHART = {
    chart: "kube-prometheus-stack",
    version: "88.5.3",
    repo: "https://prometheus-community.github.io/helm-charts",
} as const;

/**
 * Images the platform pins itself (the chart version pins the rest: Grafana, kube-state-metrics,
 * node-exporter through their subchart versions). The tags are the chart 88.5.3 defaults, written
 * out so that changing one is a reviewed diff of this file.
 */
export const KPS_IMAGES = {
    prometheus: { registry: "quay.io", repository: "prometheus/prometheus", tag: "v3.14.0-distroless" },
    alertmanager: { registry: "quay.io", repository: "prometheus/alertmanager", tag: "v0.34.0" },
    operator: { registry: "quay.io", repository: "prometheus-operator/prometheus-operator", tag: "v0.93.1" },
    configReloader: { registry: "quay.io", repository: "prometheus-operator/prometheus-config-reloader", tag: "v0.93.1" },
} as const;

/** Fixed names: the README's commands and the chart values refer to them. */
export const GRAFANA_ADMIN_SECRET = "grafana-admin";
export const ALERTMANAGER_CONFIG_SECRET = "alertmanager-platform";
const ALERTMANAGER_STORAGE = "2Gi";

type Resources = { requests: Record<string, string>; limits: Record<string, string> };
const small = (cpu: string, memory: string, limit: string): Resources => ({ requests: { cpu, memory }, limits: { memory: limit } });
type Image = { registry: string; repository: string; tag: string };
type ClaimTemplate = { spec: { storageClassName: string; accessModes: string[]; resources: { requests: { storage: string } } } };

/**
 * The subset of kube-prometheus-stack 88.5.3's values this program sets. The chart ships no values
 * schema; tests hold every key here to the chart's values.yaml (and the subcharts' keys to theirs).
 */
export interface KpsValues {
    crds: { enabled: boolean };
    alertmanager: {
        alertmanagerSpec: {
            image: Image;
            useExistingSecret: boolean;
            configSecret: string;
            storage: { volumeClaimTemplate: ClaimTemplate };
            resources: Resources;
        };
    };
    grafana: {
        defaultDashboardsTimezone: string;
        admin: { existingSecret: string; userKey: string; passwordKey: string };
        sidecar: { dashboards: { enabled: boolean; label: string; labelValue: string; searchNamespace: string } };
        resources: Resources;
    };
    prometheusOperator: {
        image: Image;
        prometheusConfigReloader: { image: Image };
        resources: Resources;
    };
    prometheus: {
        prometheusSpec: {
            image: Image;
            retention: string;
            retentionSize: string;
            storageSpec: { volumeClaimTemplate: ClaimTemplate };
            resources: Resources;
        };
    };
    "kube-state-metrics": { resources: Resources };
    "prometheus-node-exporter": { resources: Resources };
    kubeControllerManager: { enabled: boolean };
    kubeScheduler: { enabled: boolean };
    kubeEtcd: { enabled: boolean };
    kubeProxy: { enabled: boolean };
}

export interface KpsValuesArgs {
    namespace: string;
    storageClassName: string;
    retention: string;
    storageSize: string;
    resources: ResourceSpec;
}

const GiB = 1024 ** 3;

export function kpsValues(a: KpsValuesArgs): KpsValues {
    const claim = (size: string): ClaimTemplate => ({
        spec: { storageClassName: a.storageClassName, accessModes: ["ReadWriteOnce"], resources: { requests: { storage: size } } },
    });
    return {
        crds: { enabled: true },
        alertmanager: {
            alertmanagerSpec: {
                image: { ...KPS_IMAGES.alertmanager },
                // The configuration (receivers with their URLs and keys) is a Secret of ours: never
                // in the chart's values, which Helm stores in plaintext in its release record.
                useExistingSecret: true,
                configSecret: ALERTMANAGER_CONFIG_SECRET,
                storage: { volumeClaimTemplate: claim(ALERTMANAGER_STORAGE) },
                resources: small("10m", "64Mi", "256Mi"),
            },
        },
        grafana: {
            defaultDashboardsTimezone: "utc",
            admin: { existingSecret: GRAFANA_ADMIN_SECRET, userKey: "admin-user", passwordKey: "admin-password" },
            // Only ConfigMaps in the monitoring namespace become dashboards, not any namespace's.
            sidecar: { dashboards: { enabled: true, label: "grafana_dashboard", labelValue: "1", searchNamespace: a.namespace } },
            resources: small("50m", "256Mi", "512Mi"),
        },
        prometheusOperator: {
            image: { ...KPS_IMAGES.operator },
            prometheusConfigReloader: { image: { ...KPS_IMAGES.configReloader } },
            resources: small("50m", "128Mi", "256Mi"),
        },
        prometheus: {
            prometheusSpec: {
                image: { ...KPS_IMAGES.prometheus },
                retention: a.retention,
                // Size-based retention below the volume's size: old blocks go before the disk is full.
                retentionSize: `${Math.max(1, Math.floor((quantityBytes(a.storageSize) * 0.8) / GiB))}GiB`,
                storageSpec: { volumeClaimTemplate: claim(a.storageSize) },
                resources: {
                    requests: { cpu: a.resources.cpuRequest, memory: a.resources.memoryRequest },
                    limits: { memory: a.resources.memoryLimit, ...(a.resources.cpuLimit ? { cpu: a.resources.cpuLimit } : {}) },
                },
            },
        },
        "kube-state-metrics": { resources: small("20m", "64Mi", "256Mi") },
        "prometheus-node-exporter": { resources: small("20m", "32Mi", "64Mi") },
        // EKS runs the control plane out of reach: its controller manager, scheduler and etcd cannot
        // be scraped, and the kube-proxy add-on serves metrics on 127.0.0.1 only. Left on, the
        // chart's rules would report each of them down forever; off, their rules are not created.
        kubeControllerManager: { enabled: false },
        kubeScheduler: { enabled: false },
        kubeEtcd: { enabled: false },
        kubeProxy: { enabled: false },
    };
}

/**
 * Alertmanager's configuration: every alert to the configured receiver, grouped per alert and
 * namespace. A receiver that sends nothing gets everything when none is configured, and always
 * the chart's always-firing Watchdog (a dead man's switch for an external checker), its
 * InfoInhibitor and its info-severity alerts (context for dashboards, not notifications).
 */
export function alertmanagerConfig(receiver?: AlertReceiver): string {
    const platform: Record<string, unknown> = { name: "platform" };
    if (receiver?.type === "slack") {
        platform.slack_configs = [{
            api_url: receiver.url,
            ...(receiver.channel ? { channel: receiver.channel } : {}),
            send_resolved: true,
            title: '[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }} ({{ .CommonLabels.severity }})',
            text: '{{ range .Alerts }}{{ .Annotations.summary }}\n{{ .Annotations.description }}\nRunbook: {{ .Annotations.runbook_url }}\n{{ end }}',
        }];
    } else if (receiver?.type === "pagerduty") {
        platform.pagerduty_configs = [{ routing_key: receiver.routingKey, send_resolved: true, description: "{{ .CommonAnnotations.summary }}" }];
    } else if (receiver?.type === "webhook") {
        platform.webhook_configs = [{ url: receiver.url, send_resolved: true }];
    }
    const config = {
        route: {
            receiver: receiver ? "platform" : "null",
            group_by: ["alertname", "namespace"],
            group_wait: "30s",
            group_interval: "5m",
            repeat_interval: "4h",
            routes: [
                { receiver: "null", matchers: ['alertname = "Watchdog"'] },
                { receiver: "null", matchers: ['alertname = "InfoInhibitor"'] },
                { receiver: "null", matchers: ['severity = "info"'] },
            ],
        },
        receivers: [{ name: "null" }, ...(receiver ? [platform] : [])],
    };
    return YAML.stringify(config, { lineWidth: 0 });
}

export interface MonitoringArgs {
    /** Namespace created for the stack. */
    namespace: string;
    storageClassName: pulumi.Input<string>;
    retention: string;
    storageSize: string;
    resources: ResourceSpec;
    /** Secret: where alerts go. Undefined: nowhere (Alertmanager's and Grafana's UIs only). */
    alertReceiver?: pulumi.Output<AlertReceiver | undefined>;
}

/**
 * kube-prometheus-stack as a real Helm release: Prometheus on a persistent volume, Alertmanager,
 * Grafana, kube-state-metrics and node-exporter, with the Grafana admin password and the
 * Alertmanager configuration in Secrets of ours.
 */
export class Monitoring extends pulumi.ComponentResource {
    public readonly namespace: pulumi.Output<string>;
    /** The release: custom resources (PrometheusRule, PodMonitor) need its CRDs first. */
    public readonly release: k8s.helm.v3.Release;
    public readonly grafanaAdminSecretName: pulumi.Output<string>;
    public readonly grafanaPortForwardCommand: pulumi.Output<string>;

    constructor(name: string, args: MonitoringArgs, opts?: pulumi.ComponentResourceOptions) {
        super("platform:index:Monitoring", name, {}, opts);

        const ns = new k8s.core.v1.Namespace(`${name}-ns`, {
            metadata: {
                name: args.namespace,
                // node-exporter reads the host (hostNetwork, hostPID, hostPath): privileged, stated.
                labels: { "pod-security.kubernetes.io/enforce": "privileged", "pod-security.kubernetes.io/warn": "baseline" },
            },
        }, { parent: this });
        const namespace = ns.metadata.name;

        const grafanaPassword = new random.RandomPassword(`${name}-grafana-admin-password`, { length: 32, special: false }, { parent: this });
        const grafanaSecret = new k8s.core.v1.Secret(`${name}-grafana-admin`, {
            metadata: { name: GRAFANA_ADMIN_SECRET, namespace },
            type: "Opaque",
            stringData: { "admin-user": "admin", "admin-password": grafanaPassword.result },
        }, { parent: this });

        const receiver = args.alertReceiver ?? pulumi.output(undefined);
        const alertmanagerSecret = new k8s.core.v1.Secret(`${name}-alertmanager-config`, {
            metadata: { name: ALERTMANAGER_CONFIG_SECRET, namespace },
            type: "Opaque",
            stringData: { "alertmanager.yaml": pulumi.secret(receiver.apply((r) => alertmanagerConfig(r))) },
        }, { parent: this });

        const values = pulumi.output(args.storageClassName).apply((storageClassName) => kpsValues({
            namespace: args.namespace, storageClassName, retention: args.retention, storageSize: args.storageSize, resources: args.resources,
        }));
        this.release = new k8s.helm.v3.Release(`${name}-release`, {
            name: KPS_RELEASE_NAME,
            namespace,
            chart: KPS_CHART.chart,
            version: KPS_CHART.version,
            repositoryOpts: { repo: KPS_CHART.repo },
            values,
            atomic: true,
            cleanupOnFail: true,
            timeout: 900,
            waitForJobs: true,
        }, { parent: this, dependsOn: [grafanaSecret, alertmanagerSecret] });

        this.namespace = namespace;
        this.grafanaAdminSecretName = grafanaSecret.metadata.name;
        this.grafanaPortForwardCommand = pulumi.interpolate`kubectl -n ${namespace} port-forward svc/${KPS_RELEASE_NAME}-grafana 3000:80`;
        this.registerOutputs({
            namespace: this.namespace,
            grafanaAdminSecretName: this.grafanaAdminSecretName,
            grafanaPortForwardCommand: this.grafanaPortForwardCommand,
        });
    }
}
