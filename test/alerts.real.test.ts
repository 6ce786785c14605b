// The platform's alert rules under Prometheus's own tools: `promtool check rules` on the rendered
// rules file, and `promtool test rules` unit tests for every alert, each firing on a failure
// series with the right labels and annotations and staying silent on a healthy one.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, it } from "node:test";
import YAML from "yaml";
import { AlertRule, RuleGroup, rulesFile } from "../components/alerts";
import { run } from "./support/realpg";
import { platformRuleGroups, RULE_TARGETS as T } from "./support/monitoring";

const HAS_PROMTOOL = (process.env.PATH ?? "").split(path.delimiter).some((d) => fs.existsSync(path.join(d, "promtool")));
const skip = HAS_PROMTOOL ? false : "promtool is not installed (apt-get install prometheus)";

interface Case {
    alert: string;
    what: string;
    series: [string, string][];
    at: string;
    /** Sample spacing; cases spanning days use 10m (and are evaluated every 10m) to stay fast. */
    interval?: "10m" | "1h";
    /** The alerts expected at `at`: labels besides alertname, and the expanded summary. Empty: silent. */
    fires: { labels: Record<string, string>; summary: string }[];
}

const pg = `namespace="${T.postgresNamespace}"`;
const pod = `pod="${T.postgresStatefulSet}-0"`;

function staleCases(alert: string, cronJob: string, maxAge: number, summary: string): Case[] {
    const step = maxAge > 2 * 86400 ? 3600 : 600;
    const at = maxAge + 2 * step;
    const n = Math.ceil(at / step) + 3;
    const s = `${pg}, cronjob="${cronJob}"`;
    const labels = { namespace: T.postgresNamespace, cronjob: cronJob };
    const list: Omit<Case, "alert" | "at" | "interval">[] = [
        { what: "last success older than allowed", series: [[`kube_cronjob_created{${s}}`, `0x${n}`], [`kube_cronjob_status_last_successful_time{${s}}`, `0x${n}`]], fires: [{ labels, summary }] },
        { what: "never succeeded since the CronJob was created", series: [[`kube_cronjob_created{${s}}`, `0x${n}`]], fires: [{ labels, summary }] },
        { what: "succeeded an hour ago", series: [[`kube_cronjob_created{${s}}`, `0x${n}`], [`kube_cronjob_status_last_successful_time{${s}}`, `${at - 3600}x${n}`]], fires: [] },
        { what: "a new CronJob that has not had its first run yet", series: [[`kube_cronjob_created{${s}}`, `${at - 3600}x${n}`]], fires: [] },
    ];
    return list.map((c) => ({ ...c, alert, at: `${at}s`, interval: step === 3600 ? "1h" : "10m" }));
}

function jobCases(): Case[] {
    const job = (name: string, owner: string, failed: number, start: number): [string, string][] => [
        [`kube_job_status_failed{${pg}, job_name="${name}", reason="BackoffLimitExceeded"}`, `${failed}x20`],
        [`kube_job_owner{${pg}, job_name="${name}", owner_kind="CronJob", owner_name="${owner}", owner_is_controller="true"}`, "1x20"],
        [`kube_job_status_start_time{${pg}, job_name="${name}"}`, `${start}x20`],
    ];
    const success = (cronJob: string, at: number): [string, string] => [`kube_cronjob_status_last_successful_time{${pg}, cronjob="${cronJob}"}`, `${at}x20`];
    const fired = (name: string, owner: string) => ({
        labels: { namespace: T.postgresNamespace, job_name: name, owner_name: owner },
        summary: `Job ${T.postgresNamespace}/${name} of CronJob ${owner} failed`,
    });
    const alert = "PostgresBackupJobFailed";
    return [
        { alert, what: "backup job failed after the last success", at: "10m", series: [...job("postgres-backup-29400000", T.backupCronJob, 1, 600), success(T.backupCronJob, 100)], fires: [fired("postgres-backup-29400000", T.backupCronJob)] },
        { alert, what: "restore-verify job failed and never succeeded", at: "10m", series: job("postgres-restore-verify-29400010", T.verifyCronJob, 2, 600), fires: [fired("postgres-restore-verify-29400010", T.verifyCronJob)] },
        { alert, what: "a later run succeeded", at: "10m", series: [...job("postgres-backup-29400000", T.backupCronJob, 1, 600), success(T.backupCronJob, 1200)], fires: [] },
        { alert, what: "job succeeded (failed count 0)", at: "10m", series: [...job("postgres-backup-29400000", T.backupCronJob, 0, 600)], fires: [] },
        { alert, what: "a failed job of someone else's CronJob", at: "10m", series: job("nightly-report-29400000", "nightly-report", 1, 600), fires: [] },
    ];
}

export function cases(): Case[] {
    const exporter = `container="${T.exporterContainer}"`;
    const vol = (pvc: string, available: string): [string, string][] => [
        [`kubelet_volume_stats_capacity_bytes{${pg}, persistentvolumeclaim="${pvc}"}`, "100000000000x100"],
        [`kubelet_volume_stats_available_bytes{${pg}, persistentvolumeclaim="${pvc}"}`, available],
    ];
    const conn = (idle: number): [string, string][] => [
        [`pg_stat_activity_count{${pg}, ${pod}, datname="mlflow", state="idle"}`, `${idle}x30`],
        [`pg_stat_activity_count{${pg}, ${pod}, datname="mlflow", state="active"}`, "25x30"],
        [`pg_settings_max_connections{${pg}, ${pod}}`, "100x30"],
    ];
    const writes = (inserted: string): [string, string][] => [
        [`pg_stat_database_tup_inserted{${pg}, ${pod}, datname="mlflow"}`, inserted],
        [`pg_stat_database_tup_updated{${pg}, ${pod}, datname="mlflow"}`, "0x80"],
        [`pg_stat_database_tup_deleted{${pg}, ${pod}, datname="mlflow"}`, "0x80"],
    ];
    const sts = `${T.postgresNamespace}/${T.postgresStatefulSet}`;
    const pgPod = { namespace: T.postgresNamespace, pod: `${T.postgresStatefulSet}-0` };
    const mlflow = `namespace="${T.mlflowNamespace}", deployment="${T.mlflowDeployment}"`;
    const crash = (ns: string, reason: string): [string, string][] => [[`kube_pod_container_status_waiting_reason{namespace="${ns}", pod="mlflow-7d9f8-x2x9q", container="mlflow", reason="${reason}"}`, "1x40"]];
    return [
        { alert: "PostgresDown", what: "exporter cannot connect (pg_up 0)", at: "5m", series: [[`pg_up{${pg}, ${pod}, ${exporter}}`, "0x10"], [`up{${pg}, ${pod}, ${exporter}}`, "1x10"]], fires: [{ labels: pgPod, summary: `PostgreSQL StatefulSet ${sts} is down` }] },
        { alert: "PostgresDown", what: "pod not scraped (up 0)", at: "5m", series: [[`up{${pg}, ${pod}, ${exporter}}`, "0x10"]], fires: [{ labels: pgPod, summary: `PostgreSQL StatefulSet ${sts} is down` }] },
        { alert: "PostgresDown", what: "no pod at all (no up series)", at: "5m", series: [[`up{namespace="${T.mlflowNamespace}", pod="mlflow-0"}`, "1x10"]], fires: [{ labels: { namespace: T.postgresNamespace, container: T.exporterContainer }, summary: `PostgreSQL StatefulSet ${sts} is down` }] },
        { alert: "PostgresDown", what: "healthy", at: "5m", series: [[`pg_up{${pg}, ${pod}, ${exporter}}`, "1x10"], [`up{${pg}, ${pod}, ${exporter}}`, "1x10"]], fires: [] },

        { alert: "PostgresConnectionsHigh", what: "85 of 100 connections", at: "20m", series: conn(60), fires: [{ labels: pgPod, summary: `PostgreSQL ${T.postgresNamespace}/${T.postgresStatefulSet}-0 uses 85% of max_connections` }] },
        { alert: "PostgresConnectionsHigh", what: "65 of 100 connections", at: "20m", series: conn(40), fires: [] },

        { alert: "PostgresWalArchivingFailing", what: "archive_command fails every minute", at: "30m", series: [[`pg_stat_archiver_failed_count{${pg}, ${pod}}`, "0+1x40"]], fires: [{ labels: pgPod, summary: `WAL archiving of PostgreSQL ${T.postgresNamespace}/${T.postgresStatefulSet}-0 keeps failing` }] },
        { alert: "PostgresWalArchivingFailing", what: "old failures, none now", at: "30m", series: [[`pg_stat_archiver_failed_count{${pg}, ${pod}}`, "3x40"]], fires: [] },

        { alert: "PostgresWalArchivingBehind", what: "no segment archived while rows are written", at: "45m", series: [[`pg_stat_archiver_last_archive_age{${pg}, ${pod}}`, "0+60x80"], ...writes("0+10x80")], fires: [{ labels: pgPod, summary: `PostgreSQL ${T.postgresNamespace}/${T.postgresStatefulSet}-0 archived no WAL for more than ${T.walArchiveMaxAgeSeconds / 60}m while rows were written` }] },
        { alert: "PostgresWalArchivingBehind", what: "idle database (nothing to archive)", at: "45m", series: [[`pg_stat_archiver_last_archive_age{${pg}, ${pod}}`, "0+60x80"], ...writes("500x80")], fires: [] },
        { alert: "PostgresWalArchivingBehind", what: "archiving keeps up", at: "45m", series: [[`pg_stat_archiver_last_archive_age{${pg}, ${pod}}`, "30x80"], ...writes("0+10x80")], fires: [] },

        { alert: "PersistentVolumeFillingUp", what: "86% full and filling 10 MB a minute", at: "60m", series: vol("data-postgres-0", "14000000000-10000000x100"), fires: [{ labels: { namespace: T.postgresNamespace, persistentvolumeclaim: "data-postgres-0" }, summary: `Volume ${T.postgresNamespace}/data-postgres-0 is over 85% full and fills up within 24 hours` }] },
        { alert: "PersistentVolumeFillingUp", what: "86% full but not growing", at: "60m", series: vol("data-postgres-0", "14000000000x100"), fires: [] },
        { alert: "PersistentVolumeFillingUp", what: "a restore job's scratch volume filling", at: "60m", series: vol("postgres-restore-verify-29400000-abcde-scratch", "14000000000-10000000x100"), fires: [] },

        ...staleCases("PostgresBackupMissing", T.backupCronJob, T.backupMaxAgeSeconds, `CronJob ${T.postgresNamespace}/${T.backupCronJob} has no successful backup for more than ${durationText(T.backupMaxAgeSeconds)}`),
        ...staleCases("PostgresRestoreVerifyStale", T.verifyCronJob, T.verifyMaxAgeSeconds!, `CronJob ${T.postgresNamespace}/${T.verifyCronJob} has not proven a backup restorable for more than ${durationText(T.verifyMaxAgeSeconds!)}`),
        ...jobCases(),

        { alert: "MlflowUnavailable", what: "no available replica", at: "10m", series: [[`kube_deployment_status_replicas_available{${mlflow}}`, "0x20"]], fires: [{ labels: { namespace: T.mlflowNamespace, deployment: T.mlflowDeployment }, summary: `Deployment ${T.mlflowNamespace}/${T.mlflowDeployment} has no available replica` }] },
        { alert: "MlflowUnavailable", what: "one replica available", at: "10m", series: [[`kube_deployment_status_replicas_available{${mlflow}}`, "1x20"]], fires: [] },

        { alert: "PodCrashLooping", what: "MLflow container in CrashLoopBackOff", at: "30m", series: crash(T.mlflowNamespace, "CrashLoopBackOff"), fires: [{ labels: { namespace: T.mlflowNamespace, pod: "mlflow-7d9f8-x2x9q", container: "mlflow" }, summary: `Container mlflow of pod ${T.mlflowNamespace}/mlflow-7d9f8-x2x9q is crash-looping` }] },
        { alert: "PodCrashLooping", what: "a pod still being created", at: "30m", series: crash(T.mlflowNamespace, "ContainerCreating"), fires: [] },
        { alert: "PodCrashLooping", what: "crash loop outside the platform's namespaces", at: "30m", series: crash("kube-system", "CrashLoopBackOff"), fires: [] },
    ];
}

function durationText(seconds: number): string {
    if (seconds % 86400 === 0) return `${seconds / 86400}d`;
    if (seconds % 3600 === 0) return `${seconds / 3600}h`;
    return `${seconds / 60}m`;
}

/** A promtool unit-test file: one test group per case, so each case has only its own series. */
function promtoolTests(rules: AlertRule[], list: Case[], interval = "1m"): string {
    const byName = new Map(rules.map((r) => [r.alert, r]));
    return YAML.stringify({
        rule_files: ["rules.yaml"],
        evaluation_interval: interval,
        tests: list.map((c) => {
            const rule = byName.get(c.alert);
            if (!rule) throw new Error(`no rule ${c.alert}`);
            return {
                name: `${c.alert}: ${c.what}`,
                interval,
                input_series: c.series.map(([series, values]) => ({ series, values })),
                alert_rule_test: [{
                    eval_time: c.at,
                    alertname: c.alert,
                    exp_alerts: c.fires.map((f) => ({
                        exp_labels: { ...f.labels, severity: rule.labels.severity },
                        exp_annotations: { summary: f.summary, description: rule.annotations.description, runbook_url: rule.annotations.runbook_url },
                    })),
                }],
            };
        }),
    }, { lineWidth: 0 });
}

async function promtool(groups: RuleGroup[], tests?: string): Promise<{ status: number; out: string }> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "promtool-"));
    try {
        fs.writeFileSync(path.join(dir, "rules.yaml"), rulesFile(groups));
        const args = tests === undefined ? ["check", "rules", "rules.yaml"] : ["test", "rules", "tests.yaml"];
        if (tests !== undefined) fs.writeFileSync(path.join(dir, "tests.yaml"), tests);
        const r = await run("promtool", args, { cwd: dir });
        return { status: r.status, out: r.stdout + r.stderr };
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}

describe("alert rules under promtool", { skip }, () => {
    it("pass promtool check rules", async () => {
        const groups = await platformRuleGroups();
        const r = await promtool(groups);
        assert.equal(r.status, 0, r.out);
        const count = groups.reduce((n, g) => n + g.rules.length, 0);
        assert.match(r.out, new RegExp(`SUCCESS: ${count} rules found`));
    });

    it("every alert has a unit test that fires it and one that keeps it silent", async () => {
        const alerts = (await platformRuleGroups()).flatMap((g) => g.rules.map((r) => r.alert));
        const list = cases();
        for (const a of alerts) {
            assert.ok(list.some((c) => c.alert === a && c.fires.length > 0), `${a} has no firing case`);
            assert.ok(list.some((c) => c.alert === a && c.fires.length === 0), `${a} has no silent case`);
        }
        assert.deepEqual([...new Set(list.map((c) => c.alert))].sort(), [...alerts].sort(), "cases for alerts that do not exist");
    });

    it("pass promtool test rules: each fires on its failure series with the right labels and annotations, and stays silent when healthy", async () => {
        const groups = await platformRuleGroups();
        const rules = groups.flatMap((g) => g.rules);
        const all = cases();
        // One file per sample spacing: cases spanning days are evaluated every 10 minutes or hourly.
        const results = await Promise.all((["1m", "10m", "1h"] as const).map((interval) =>
            promtool(groups, promtoolTests(rules, all.filter((c) => (c.interval ?? "1m") === interval), interval))));
        for (const r of results) {
            assert.equal(r.status, 0, r.out);
            assert.match(r.out, /SUCCESS/);
        }
    });

    it("the unit tests can fail: a wrong expectation is reported", async () => {
        const groups = await platformRuleGroups();
        const rules = groups.flatMap((g) => g.rules);
        const [firing] = cases().filter((c) => c.alert === "PostgresDown" && c.fires.length > 0);
        const wrongSeverity = promtoolTests(rules.map((r) => ({ ...r, labels: { severity: r.labels.severity === "critical" ? "warning" : "critical" } })), [firing]);
        const silenced = promtoolTests(rules, [{ ...firing, fires: [] }]);
        for (const tests of [wrongSeverity, silenced]) {
            const r = await promtool(groups, tests);
            assert.notEqual(r.status, 0, r.out);
            assert.match(r.out, /FAILED/);
        }
    });
});
