// monitoring.* and alertReceiver: kube-prometheus-stack (or an existing Prometheus) and where alerts go.
import { isBinaryQuantity, isDns1123Label, noUnknownKeys, Obj, oneOf, Problems, quantityBytes, resources, section, str } from "./checks";
import { AlertReceiver, KPS_RELEASE_NAME, MonitoringConfig, MonitoringMode } from "./types";

const RETENTION = /^[1-9][0-9]*(h|d|w|y)$/;
const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

export function monitoringConfig(p: Problems, v: unknown, size: "dev" | "prod"): MonitoringConfig {
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
export function alertReceiverConfig(p: Problems, v: unknown, isSecret: boolean, mode: MonitoringMode): AlertReceiver | undefined {
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

