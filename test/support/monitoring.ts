// What the monitoring tests share: the alert targets of the committed dev stack and its rules.
import * as fs from "fs";
import * as path from "path";
import YAML from "yaml";
import { AlertTargets, alertRuleGroups, backupMaxAgeSeconds, RuleGroup, verifyMaxAgeSeconds } from "../../components/alerts";
import { BACKUP_JOB_DEADLINE_SECONDS } from "../../components/backup";
import { Dashboard, dashboard } from "../../components/dashboards";

const devStack = YAML.parse(fs.readFileSync(path.join(__dirname, "..", "..", "stacks", "Pulumi.dev.yaml"), "utf8")).config;
const backup = devStack["mlflow-platform:backup"];

export const RULE_TARGETS: AlertTargets = {
    postgresNamespace: "data",
    postgresStatefulSet: "postgres",
    exporterContainer: "postgres-exporter",
    mlflowNamespace: "mlflow",
    mlflowDeployment: "mlflow",
    platformNamespaces: ["data", "mlflow", "monitoring"],
    volumeNamespaces: ["data", "monitoring"],
    backupCronJob: "postgres-backup",
    verifyCronJob: "postgres-restore-verify",
    restoreCronJob: "postgres-restore",
    backupMaxAgeSeconds: backupMaxAgeSeconds(backup.schedule, BACKUP_JOB_DEADLINE_SECONDS),
    verifyMaxAgeSeconds: verifyMaxAgeSeconds(backup.verifySchedule),
    walArchiveMaxAgeSeconds: 900,
    runbookBaseUrl: "README.md",
};

/** The rules the platform deploys. */
export async function platformRuleGroups(): Promise<RuleGroup[]> {
    return alertRuleGroups(RULE_TARGETS);
}

/** The dashboards the platform deploys, with their constants set. */
export async function platformDashboards(): Promise<Dashboard[]> {
    return [
        dashboard("postgres", { namespace: "data", pvc: "data-postgres-[0-9]+" }),
        dashboard("backups", { namespace: "data", cronjobs: "postgres-backup|postgres-restore-verify|postgres-restore" }),
        dashboard("mlflow", { namespace: "mlflow", deployment: "mlflow" }),
    ];
}

/** Values Grafana substitutes for its built-in interval variables. */
const GRAFANA_BUILTINS: Record<string, string> = { __rate_interval: "5m", __interval: "1m", __range: "1d" };

/** A dashboard's PromQL with every variable replaced as Grafana would: [panel title, refId, expr]. */
export function dashboardQueries(d: Dashboard): { panel: string; refId: string; expr: string }[] {
    const values: Record<string, string> = { ...GRAFANA_BUILTINS };
    for (const v of d.templating.list) if (v.type === "constant") values[v.name] = v.query;
    return d.panels.flatMap((p) => (p.targets ?? []).map((t) => ({
        panel: p.title,
        refId: t.refId,
        expr: t.expr.replace(/\$\{(\w+)\}|\$(\w+)/g, (m, a: string | undefined, b: string | undefined) => {
            const name = a ?? b ?? "";
            if (!(name in values)) throw new Error(`dashboard ${d.uid}, panel ${p.title}: unknown variable ${m}`);
            return values[name];
        }),
    })));
}

const PROMQL_WORDS = new Set(["and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "inf", "nan"]);

/**
 * Metric names a PromQL expression reads: identifiers that are not functions, keywords or label
 * names (label matchers, grouping lists, strings and ranges are removed first).
 */
export function metricNames(expr: string): string[] {
    const s = expr
        .replace(/"(?:[^"\\]|\\.)*"/g, '""')
        .replace(/\{[^}]*\}/g, " ")
        .replace(/\[[^\]]*\]/g, " ")
        .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ");
    const names = new Set<string>();
    for (const m of s.matchAll(/(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g)) {
        if (m[2] !== undefined || PROMQL_WORDS.has(m[1])) continue;
        names.add(m[1]);
    }
    return [...names].sort();
}

/** Every metric name the platform's alert rules and dashboards read. */
export async function usedMetricNames(): Promise<string[]> {
    const exprs = [
        ...(await platformRuleGroups()).flatMap((g) => g.rules.map((r) => r.expr)),
        ...(await platformDashboards()).flatMap((d) => dashboardQueries(d).map((q) => q.expr)),
    ];
    return [...new Set(exprs.flatMap(metricNames))].sort();
}

// Metrics that do not come from the PostgreSQL exporter (whose names the real exporter test checks
// against a scrape), each list with where its names are defined.

/** kube-state-metrics v2 (the chart's dependency), docs/metrics/workload/{cronjob,job,deployment,pod}-metrics.md. */
export const KUBE_STATE_METRICS = [
    "kube_cronjob_created", "kube_cronjob_spec_suspend", "kube_cronjob_status_last_successful_time",
    "kube_deployment_spec_replicas", "kube_deployment_status_replicas_available",
    "kube_job_owner", "kube_job_status_completion_time", "kube_job_status_failed", "kube_job_status_start_time", "kube_job_status_succeeded",
    "kube_pod_container_status_restarts_total", "kube_pod_container_status_waiting_reason",
];
/** The kubelet's volume statistics (kubernetes pkg/kubelet/metrics/collectors/volume_stats.go), scraped by the chart's kubelet ServiceMonitor. */
export const KUBELET_METRICS = ["kubelet_volume_stats_available_bytes", "kubelet_volume_stats_capacity_bytes", "kubelet_volume_stats_used_bytes"];
/** MLflow's --expose-prometheus metrics (mlflow docs/source/monitoring.rst; prometheus_flask_exporter with defaults_prefix "mlflow"). */
export const MLFLOW_METRICS = ["mlflow_http_request_duration_seconds_bucket", "mlflow_http_request_total"];
/** Prometheus's own per-target series. */
export const PROMETHEUS_METRICS = ["up"];
