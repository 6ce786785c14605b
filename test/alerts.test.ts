import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { alertRuleGroups, backupMaxAgeSeconds, runbookAnchor, verifyMaxAgeSeconds } from "../components/alerts";
import { cronMaxIntervalSeconds } from "../config/cron";
import { RULE_TARGETS } from "./support/monitoring";

describe("cron schedule intervals (alert thresholds derive from them)", () => {
    it("finds the longest gap between runs", () => {
        const h = 3600;
        const d = 24 * h;
        assert.equal(cronMaxIntervalSeconds("0 2 * * *"), d);
        assert.equal(cronMaxIntervalSeconds("@hourly"), h);
        assert.equal(cronMaxIntervalSeconds("*/15 * * * *"), 900);
        assert.equal(cronMaxIntervalSeconds("0 4 * * 0"), 7 * d);
        assert.equal(cronMaxIntervalSeconds("0 5 * * MON"), 7 * d);
        assert.equal(cronMaxIntervalSeconds("0 2 * * 1-5"), 3 * d, "Friday to Monday");
        assert.equal(cronMaxIntervalSeconds("30 1,13 * * *"), 12 * h);
        assert.equal(cronMaxIntervalSeconds("0 0 1 * *"), 31 * d);
        assert.equal(cronMaxIntervalSeconds("0 0 1 1 *"), 366 * d, "across a leap year");
        // Day of month OR day of week when both are restricted (Kubernetes' cron).
        assert.equal(cronMaxIntervalSeconds("0 0 1 * 0"), 7 * d);
    });

    it("allows a backup the schedule's interval plus the job's time budget and an hour", () => {
        assert.equal(backupMaxAgeSeconds("0 2 * * *", 6 * 3600), 31 * 3600);
        assert.equal(verifyMaxAgeSeconds("0 4 * * 0"), 8 * 86400);
        assert.equal(verifyMaxAgeSeconds("0 4 1 * *"), 32 * 86400);
    });
});

describe("alert rules", () => {
    const rules = alertRuleGroups(RULE_TARGETS).flatMap((g) => g.rules);

    it("cover every alert the issue lists, each with a severity, a summary and a runbook link", () => {
        assert.deepEqual(rules.map((r) => r.alert).sort(), [
            "MlflowUnavailable", "PersistentVolumeFillingUp", "PodCrashLooping", "PostgresBackupJobFailed", "PostgresBackupMissing",
            "PostgresConnectionsHigh", "PostgresDown", "PostgresRestoreVerifyStale", "PostgresWalArchivingBehind", "PostgresWalArchivingFailing",
        ]);
        for (const r of rules) {
            assert.ok(["critical", "warning"].includes(r.labels.severity), r.alert);
            assert.ok(r.annotations.summary.length > 10 && r.annotations.description.length > 20, r.alert);
            assert.equal(r.annotations.runbook_url, `README.md#${runbookAnchor(r.alert)}`);
        }
    });

    it("drop the restore-verify age alert when verification is suspended", () => {
        const names = alertRuleGroups({ ...RULE_TARGETS, verifyMaxAgeSeconds: undefined }).flatMap((g) => g.rules.map((r) => r.alert));
        assert.ok(!names.includes("PostgresRestoreVerifyStale"));
        assert.ok(names.includes("PostgresBackupMissing"));
    });

    it("watch the configured namespaces and object names, not hard-coded ones", () => {
        const other = alertRuleGroups({ ...RULE_TARGETS, postgresNamespace: "db", mlflowNamespace: "tracking", backupCronJob: "pg-backup" }).flatMap((g) => g.rules);
        const text = JSON.stringify(other.map((r) => r.expr));
        assert.match(text, /namespace=\\"db\\"/);
        assert.match(text, /namespace=\\"tracking\\"/);
        assert.match(text, /cronjob=\\"pg-backup\\"/);
        assert.doesNotMatch(text, /namespace=\\"data\\"|namespace=\\"mlflow\\"/);
    });
});
