// The Grafana dashboards: every panel query parses as PromQL (promtool checks them as recording
// rules), with Grafana's variables substituted, and reads only metrics that exist: the PostgreSQL
// exporter's pg_* (checked against a real scrape in postgres-exporter.real.test.ts),
// kube-state-metrics, the kubelet and MLflow (allow-lists with their sources in support/monitoring).
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, it } from "node:test";
import YAML from "yaml";
import { dashboard } from "../components/dashboards";
import { run } from "./support/realpg";
import {
    dashboardQueries, KUBE_STATE_METRICS, KUBELET_METRICS, metricNames, MLFLOW_METRICS, platformDashboards, platformRuleGroups, PROMETHEUS_METRICS,
} from "./support/monitoring";

const HAS_PROMTOOL = (process.env.PATH ?? "").split(path.delimiter).some((d) => fs.existsSync(path.join(d, "promtool")));

async function checkAsRules(rules: { record: string; expr: string }[]): Promise<{ status: number; out: string }> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dashboards-"));
    try {
        fs.writeFileSync(path.join(dir, "rules.yaml"), YAML.stringify({ groups: [{ name: "dashboards", rules }] }, { lineWidth: 0 }));
        const r = await run("promtool", ["check", "rules", "rules.yaml"], { cwd: dir });
        return { status: r.status, out: r.stdout + r.stderr };
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}

const KNOWN = new Set([...KUBE_STATE_METRICS, ...KUBELET_METRICS, ...MLFLOW_METRICS, ...PROMETHEUS_METRICS]);

describe("dashboards", () => {
    it("cover what the issue asks of each", async () => {
        const titles = Object.fromEntries((await platformDashboards()).map((d) => [d.uid, d.panels.map((p) => p.title.toLowerCase()).join(" | ")]));
        const want: Record<string, string[]> = {
            "platform-postgres": ["up", "connections", "transactions", "cache hit", "database size", "volume", "locks", "archiv"],
            "platform-backups": ["last successful", "duration", "failed"],
            "platform-mlflow": ["requests", "latency", "errors", "replicas"],
        };
        for (const [uid, words] of Object.entries(want)) {
            for (const w of words) assert.ok(titles[uid]?.includes(w), `${uid} has no panel about ${w}: ${titles[uid]}`);
        }
    });

    it("refuse a stack value for a constant they do not declare, and need every one they do", () => {
        assert.throws(() => dashboard("postgres", { namespace: "data" }), /constants namespace, pvc/);
        assert.throws(() => dashboard("mlflow", { namespace: "mlflow", deployment: "mlflow", extra: "x" }), /given deployment, extra, namespace/);
    });

    it("every panel query parses as PromQL (promtool check rules)", { skip: HAS_PROMTOOL ? false : "promtool is not installed (apt-get install prometheus)" }, async () => {
        const rules = (await platformDashboards()).flatMap((d) => dashboardQueries(d).map((q, i) => ({
            record: `dashboard:${d.uid.replace(/-/g, "_")}:q${i}`,
            expr: q.expr,
        })));
        assert.ok(rules.length >= 25, `only ${rules.length} queries`);
        const r = await checkAsRules(rules);
        assert.equal(r.status, 0, r.out);
        assert.match(r.out, new RegExp(`SUCCESS: ${rules.length} rules found`));
        // The check is live: a broken query is refused.
        const broken = await checkAsRules([{ record: "dashboard:broken", expr: "sum by (datname (pg_up)" }]);
        assert.notEqual(broken.status, 0);
    });

    it("and the alert rules read only metrics the exporter, kube-state-metrics, the kubelet or MLflow provide", async () => {
        const sources = [
            ...(await platformDashboards()).flatMap((d) => dashboardQueries(d).map((q) => ({ where: `dashboard ${d.uid} panel "${q.panel}" ${q.refId}`, expr: q.expr }))),
            ...(await platformRuleGroups()).flatMap((g) => g.rules.map((r) => ({ where: `alert ${r.alert}`, expr: r.expr }))),
        ];
        for (const { where, expr } of sources) {
            const names = metricNames(expr);
            assert.ok(names.length > 0, `${where} reads no metric: ${expr}`);
            for (const n of names) assert.ok(n.startsWith("pg_") || KNOWN.has(n), `${where} reads ${n}, which no known exporter provides`);
        }
    });

    it("read metric names correctly out of PromQL (the extraction the checks above rely on)", () => {
        assert.deepEqual(metricNames('histogram_quantile(0.95, sum by (le) (rate(a_bucket{x="y"}[5m]))) * on (n) group_left (o) b > 1e9 and time() - c'), ["a_bucket", "b", "c"]);
        assert.deepEqual(metricNames('label_replace(d{cronjob=~"x|y"}, "owner_name", "$1", "cronjob", "(.+)") unless on (n) e offset 5m'), ["d", "e"]);
    });
});
