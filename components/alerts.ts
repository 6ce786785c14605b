import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import YAML from "yaml";
import { BACKUP_JOB_DEADLINE_SECONDS } from "./backup";
import { cronMaxIntervalSeconds } from "../config/cron";
import { EXPORTER_CONTAINER } from "./postgresMetrics";

/** The platform's objects the alerts watch: fixed names from the components that create them. */
export interface AlertTargets {
    postgresNamespace: string;
    /** StatefulSet name; its pods are <name>-<ordinal>. */
    postgresStatefulSet: string;
    /** Container name of the metrics sidecar (the PodMonitor's `up` series carry it). */
    exporterContainer: string;
    mlflowNamespace: string;
    mlflowDeployment: string;
    /** Namespaces whose pods must not crash-loop. */
    platformNamespaces: string[];
    /** Namespaces whose persistent volumes must not fill up. */
    volumeNamespaces: string[];
    backupCronJob: string;
    verifyCronJob: string;
    /** The on-demand restore CronJob (suspended): a failed restore Job alerts too. */
    restoreCronJob: string;
    /** Longest acceptable age of the last successful backup: the schedule's interval plus margin. */
    backupMaxAgeSeconds: number;
    /** Longest acceptable age of the last successful restore-verify; undefined when verify is suspended. */
    verifyMaxAgeSeconds?: number;
    /** No WAL segment archived for this long while rows were written means archiving is behind. */
    walArchiveMaxAgeSeconds: number;
    /** Where the README is rendered; each alert's runbook_url is this plus the alert's section. */
    runbookBaseUrl: string;
}

export type Severity = "critical" | "warning";

export interface AlertRule {
    alert: string;
    expr: string;
    for?: string;
    labels: { severity: Severity };
    annotations: { summary: string; description: string; runbook_url: string };
}

export interface RuleGroup {
    name: string;
    rules: AlertRule[];
}

/** GitHub's anchor for the README heading "### Alert: <name>". */
export function runbookAnchor(alert: string): string {
    return `alert-${alert.toLowerCase()}`;
}

function duration(seconds: number): string {
    if (seconds % 86400 === 0) return `${seconds / 86400}d`;
    if (seconds % 3600 === 0) return `${seconds / 3600}h`;
    if (seconds % 60 === 0) return `${seconds / 60}m`;
    return `${seconds}s`;
}

/** A PromQL regex matching exactly these names. */
function anyOf(names: string[]): string {
    return names.map((n) => n.replace(/[.*+?^${}()|[\]\\]/g, "\\\\$&")).join("|");
}

/**
 * Every alert the platform ships, as plain data: the PrometheusRule's spec and the rules file that
 * `promtool check rules` / `promtool test rules` read are both rendered from this.
 */
export function alertRuleGroups(t: AlertTargets): RuleGroup[] {
    const rule = (alert: string, severity: Severity, expr: string, forDuration: string | undefined, summary: string, description: string): AlertRule => ({
        alert,
        expr: expr.trim().replace(/\n\s*/g, "\n"),
        ...(forDuration ? { for: forDuration } : {}),
        labels: { severity },
        annotations: { summary, description, runbook_url: `${t.runbookBaseUrl}#${runbookAnchor(alert)}` },
    });
    const pg = `namespace="${t.postgresNamespace}"`;
    const pgPods = `pod=~"${t.postgresStatefulSet}-[0-9]+"`;
    const sts = `${t.postgresNamespace}/${t.postgresStatefulSet}`;
    const jobOwners = anyOf([t.backupCronJob, t.verifyCronJob, t.restoreCronJob]);
    const owner = `max by (namespace, job_name, owner_name) (kube_job_owner{${pg}, owner_kind="CronJob", owner_name=~"${jobOwners}"})`;

    // Age of a CronJob's last success, or of the CronJob itself when it never succeeded (a new stack
    // whose first runs all fail must alert too).
    const staleCronJob = (cronJob: string, maxAge: number) => {
        const s = `${pg}, cronjob="${cronJob}"`;
        return `
            (time() - max by (namespace, cronjob) (kube_cronjob_status_last_successful_time{${s}}) > ${maxAge})
            or
            (time() - max by (namespace, cronjob) (kube_cronjob_created{${s}}) > ${maxAge}
              unless on (namespace, cronjob) kube_cronjob_status_last_successful_time{${s}})`;
    };

    const postgres: AlertRule[] = [
        rule("PostgresDown", "critical", `
            max by (namespace, pod) (pg_up{${pg}}) == 0
            or
            max by (namespace, pod) (up{${pg}, ${pgPods}, container="${t.exporterContainer}"}) == 0
            or
            absent(up{${pg}, ${pgPods}, container="${t.exporterContainer}"})`, "2m",
            `PostgreSQL StatefulSet ${sts} is down`,
            "The metrics sidecar cannot connect to PostgreSQL (pg_up is 0), or the database pod is not running or not scraped at all. MLflow cannot read or record runs."),
        rule("PostgresConnectionsHigh", "warning", `
            sum by (namespace, pod) (pg_stat_activity_count{${pg}})
              / on (namespace, pod) max by (namespace, pod) (pg_settings_max_connections{${pg}})
            > 0.8`, "10m",
            `PostgreSQL {{ $labels.namespace }}/{{ $labels.pod }} uses {{ $value | humanizePercentage }} of max_connections`,
            "More than 80% of max_connections are in use; new connections (MLflow replicas, backups) will be refused when it reaches 100%."),
        rule("PostgresWalArchivingFailing", "critical", `
            max by (namespace, pod) (rate(pg_stat_archiver_failed_count{${pg}}[5m])) > 0`, "15m",
            `WAL archiving of PostgreSQL {{ $labels.namespace }}/{{ $labels.pod }} keeps failing`,
            "archive_command has failed repeatedly for 15 minutes. PostgreSQL keeps the unarchived WAL on its volume (it fills up) and point-in-time recovery loses everything after the last archived segment."),
        rule("PostgresWalArchivingBehind", "warning", `
            (max by (namespace, pod) (pg_stat_archiver_last_archive_age{${pg}}) > ${t.walArchiveMaxAgeSeconds})
            and on (namespace, pod)
            (sum by (namespace, pod) (
              increase(pg_stat_database_tup_inserted{${pg}}[${duration(t.walArchiveMaxAgeSeconds)}])
              + increase(pg_stat_database_tup_updated{${pg}}[${duration(t.walArchiveMaxAgeSeconds)}])
              + increase(pg_stat_database_tup_deleted{${pg}}[${duration(t.walArchiveMaxAgeSeconds)}])
            ) > 0)`, "15m",
            `PostgreSQL {{ $labels.namespace }}/{{ $labels.pod }} archived no WAL for more than ${duration(t.walArchiveMaxAgeSeconds)} while rows were written`,
            `No WAL segment reached the archive for more than ${duration(t.walArchiveMaxAgeSeconds)} although the database wrote rows: archive_timeout should have switched segments, so archiving is stuck or far behind and the recovery point is getting older.`),
        rule("PersistentVolumeFillingUp", "critical", `
            (
              max by (namespace, persistentvolumeclaim) (kubelet_volume_stats_available_bytes{namespace=~"${anyOf(t.volumeNamespaces)}", persistentvolumeclaim!~".*-scratch"})
              / max by (namespace, persistentvolumeclaim) (kubelet_volume_stats_capacity_bytes{namespace=~"${anyOf(t.volumeNamespaces)}", persistentvolumeclaim!~".*-scratch"})
              < 0.15
            )
            and
            (max by (namespace, persistentvolumeclaim) (predict_linear(kubelet_volume_stats_available_bytes{namespace=~"${anyOf(t.volumeNamespaces)}", persistentvolumeclaim!~".*-scratch"}[6h], 24 * 3600)) < 0)`, "15m",
            `Volume {{ $labels.namespace }}/{{ $labels.persistentvolumeclaim }} is over 85% full and fills up within 24 hours`,
            "Less than 15% of the volume is free and at the last 6 hours' rate it is full within a day. PostgreSQL stops (PANIC) when it cannot write WAL; Prometheus stops ingesting."),
    ];

    const backups: AlertRule[] = [
        rule("PostgresBackupMissing", "critical", staleCronJob(t.backupCronJob, t.backupMaxAgeSeconds), "10m",
            `CronJob ${t.postgresNamespace}/${t.backupCronJob} has no successful backup for more than ${duration(t.backupMaxAgeSeconds)}`,
            "The backup CronJob has not completed successfully within its schedule's interval plus the job's time budget. Losing the volume now loses everything since the last good backup."),
        rule("PostgresBackupJobFailed", "warning", `
            (
              (max by (namespace, job_name) (kube_job_status_failed{${pg}}) > 0)
              * on (namespace, job_name) group_left (owner_name) ${owner}
            )
            unless on (namespace, job_name)
            (
              max by (namespace, job_name) (kube_job_status_start_time{${pg}})
              * on (namespace, job_name) group_left (owner_name) ${owner}
              < on (namespace, owner_name) group_left ()
              max by (namespace, owner_name) (label_replace(kube_cronjob_status_last_successful_time{${pg}}, "owner_name", "$1", "cronjob", "(.+)"))
            )`, undefined,
            "Job {{ $labels.namespace }}/{{ $labels.job_name }} of CronJob {{ $labels.owner_name }} failed",
            "A backup, restore-verify or restore Job failed and no later run of the same CronJob has succeeded. Its pod's log says why."),
    ];
    if (t.verifyMaxAgeSeconds !== undefined) {
        backups.push(rule("PostgresRestoreVerifyStale", "warning", staleCronJob(t.verifyCronJob, t.verifyMaxAgeSeconds), "10m",
            `CronJob ${t.postgresNamespace}/${t.verifyCronJob} has not proven a backup restorable for more than ${duration(t.verifyMaxAgeSeconds)}`,
            "No restore verification has succeeded within its schedule's interval plus a day: the latest backups are not proven restorable."));
    }

    const mlflow: AlertRule[] = [
        rule("MlflowUnavailable", "critical", `
            max by (namespace, deployment) (kube_deployment_status_replicas_available{namespace="${t.mlflowNamespace}", deployment="${t.mlflowDeployment}"}) < 1`, "5m",
            `Deployment ${t.mlflowNamespace}/${t.mlflowDeployment} has no available replica`,
            "No MLflow pod is ready: the tracking server and UI are down for every user."),
    ];

    const pods: AlertRule[] = [
        rule("PodCrashLooping", "warning", `
            max by (namespace, pod, container) (max_over_time(kube_pod_container_status_waiting_reason{namespace=~"${anyOf(t.platformNamespaces)}", reason="CrashLoopBackOff"}[5m])) >= 1`, "15m",
            "Container {{ $labels.container }} of pod {{ $labels.namespace }}/{{ $labels.pod }} is crash-looping",
            "The container keeps exiting and Kubernetes backs off restarting it."),
    ];

    return [
        { name: "platform-postgres", rules: postgres },
        { name: "platform-backups", rules: backups },
        { name: "platform-mlflow", rules: mlflow },
        { name: "platform-pods", rules: pods },
    ];
}

/** The rules as a Prometheus rules file (what `promtool check rules` reads). */
export function rulesFile(groups: RuleGroup[]): string {
    return YAML.stringify({ groups }, { lineWidth: 0 });
}

export interface AlertsArgs {
    /** Where the PrometheusRule lives (the monitoring namespace). */
    namespace: pulumi.Input<string>;
    /** Labels the Prometheus's ruleSelector matches. */
    labels: Record<string, string>;
    postgresNamespace: pulumi.Input<string>;
    postgresStatefulSet: pulumi.Input<string>;
    mlflowNamespace: pulumi.Input<string>;
    mlflowDeployment: string;
    backupCronJob: pulumi.Input<string>;
    verifyCronJob: pulumi.Input<string>;
    restoreCronJob: pulumi.Input<string>;
    backupSchedule: string;
    verifySchedule: string;
    verifySuspended: boolean;
    /** PostgreSQL's archive_timeout (backup.archiveTimeoutSeconds): the WAL archive's expected pace. */
    archiveTimeoutSeconds: number;
    /** Namespaces watched beside the database's and MLflow's (the monitoring stack installed here). */
    extraNamespaces: string[];
    runbookBaseUrl: string;
    /** What installs the PrometheusRule CRD, when this program does (the monitoring release). */
    crds?: pulumi.Resource;
}

/**
 * How long no WAL may reach the archive while rows are written: 15 archive_timeouts (15 min at the
 * default 60 s), so a slow upload or a busy moment never pages, a stuck archiver always does.
 */
export function walArchiveMaxAgeSeconds(archiveTimeoutSeconds: number): number {
    return 15 * archiveTimeoutSeconds;
}

/** The platform's alerts as a PrometheusRule for the Prometheus Operator. */
export class Alerts extends pulumi.ComponentResource {
    public readonly ruleName: pulumi.Output<string>;

    constructor(name: string, args: AlertsArgs, opts?: pulumi.ComponentResourceOptions) {
        super("platform:index:Alerts", name, {}, opts);
        const groups = pulumi.all([args.postgresNamespace, args.postgresStatefulSet, args.mlflowNamespace, args.backupCronJob, args.verifyCronJob, args.restoreCronJob])
            .apply(([postgresNamespace, postgresStatefulSet, mlflowNamespace, backupCronJob, verifyCronJob, restoreCronJob]) => alertRuleGroups({
                postgresNamespace,
                postgresStatefulSet,
                exporterContainer: EXPORTER_CONTAINER,
                mlflowNamespace,
                mlflowDeployment: args.mlflowDeployment,
                platformNamespaces: [postgresNamespace, mlflowNamespace, ...args.extraNamespaces],
                volumeNamespaces: [postgresNamespace, ...args.extraNamespaces],
                backupCronJob,
                verifyCronJob,
                restoreCronJob,
                backupMaxAgeSeconds: backupMaxAgeSeconds(args.backupSchedule, BACKUP_JOB_DEADLINE_SECONDS),
                verifyMaxAgeSeconds: args.verifySuspended ? undefined : verifyMaxAgeSeconds(args.verifySchedule),
                walArchiveMaxAgeSeconds: walArchiveMaxAgeSeconds(args.archiveTimeoutSeconds),
                runbookBaseUrl: args.runbookBaseUrl,
            }));
        const rule = new k8s.apiextensions.CustomResource(`${name}-rules`, {
            apiVersion: "monitoring.coreos.com/v1",
            kind: "PrometheusRule",
            metadata: { name: "platform-alerts", namespace: args.namespace, labels: args.labels },
            spec: { groups },
        }, { parent: this, dependsOn: args.crds ? [args.crds] : [] });
        this.ruleName = rule.metadata.name;
        this.registerOutputs({ ruleName: this.ruleName });
    }
}

/**
 * How old the last successful backup may get: the schedule's longest gap, plus the Job's time
 * budget (a run may finish that much later than the one before), plus an hour for the CronJob's
 * starting deadline and a daylight-saving shift.
 */
export function backupMaxAgeSeconds(schedule: string, jobDeadlineSeconds: number): number {
    return cronMaxIntervalSeconds(schedule) + jobDeadlineSeconds + 3600;
}

/** Restore verification is weekly by default: stale after 8 days, or its interval plus a day. */
export function verifyMaxAgeSeconds(schedule: string): number {
    return Math.max(8 * 86400, cronMaxIntervalSeconds(schedule) + 86400);
}
