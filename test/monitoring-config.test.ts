import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RawConfig, validateConfig } from "../config";

const base: RawConfig = { region: "us-east-1" };
const SLACK = { type: "slack", url: "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX", channel: "#platform-alerts" };

function problems(raw: RawConfig, secretKeys: string[] = [], stack = "test"): string[] {
    try {
        validateConfig(stack, { ...base, ...raw }, secretKeys);
        return [];
    } catch (err) {
        return (err as Error).message.split("\n").slice(1).map((l) => l.replace(/^\s*- /, ""));
    }
}

describe("config: monitoring", () => {
    it("installs kube-prometheus-stack by default, sized per stack", () => {
        const dev = validateConfig("dev", base).monitoring;
        assert.deepEqual(dev, {
            mode: "install", namespace: "monitoring", selectorLabels: { release: "kube-prometheus-stack" },
            retention: "7d", storageSize: "20Gi", resources: { cpuRequest: "200m", memoryRequest: "1Gi", cpuLimit: undefined, memoryLimit: "1Gi" },
            runbookBaseUrl: "README.md",
        });
        const prod = validateConfig("prod", { ...base, protectData: true, cluster: { publicAccessCidrs: ["198.18.0.0/15"] } }).monitoring;
        assert.equal(prod.retention, "30d");
        assert.equal(prod.storageSize, "100Gi");
        assert.equal(validateConfig("dev", base).alertReceiver, undefined, "no receiver by default");
    });

    it("refuses bad values, naming the key, the value and what is allowed", () => {
        const cases: [unknown, string, RegExp][] = [
            [{ mode: "helm" }, "monitoring.mode: \"helm\"", /one of install, existing, none/],
            [{ retention: "15 days" }, "monitoring.retention: \"15 days\"", /whole number of h, d, w or y/],
            [{ storageSize: "50GB" }, "monitoring.storageSize: \"50GB\"", /quantity/],
            [{ storageSize: "1Gi" }, "monitoring.storageSize: \"1Gi\"", /below the 2Gi/],
            [{ namespace: "Monitoring" }, "monitoring.namespace: \"Monitoring\"", /DNS-1123/],
            [{ namespace: "data" }, "monitoring.namespace: \"data\"", /must differ from postgres.namespace/],
            [{ runbookBaseUrl: "http://wiki/runbooks" }, "monitoring.runbookBaseUrl: \"http://wiki/runbooks\"", /https URL/],
            [{ retentoin: "7d" }, "monitoring.retentoin: \"7d\"", /did you mean monitoring.retention\?/],
            [{ mode: "existing" }, "monitoring.selectorLabels: undefined", /required with mode existing/],
            [{ mode: "existing", selectorLabels: { release: "kps", "bad key!": "x" } }, "monitoring.selectorLabels.bad key!", /not a Kubernetes label name/],
            [{ mode: "existing", selectorLabels: { release: "kps" }, storageSize: "50Gi" }, "monitoring.storageSize: \"50Gi\"", /only for mode install/],
            [{ selectorLabels: { release: "kps" } }, "monitoring.selectorLabels", /only for mode existing/],
        ];
        for (const [monitoring, shown, allowed] of cases) {
            const list = problems({ monitoring });
            const line = list.find((l) => l.startsWith(shown));
            assert.ok(line, `no problem "${shown}" for ${JSON.stringify(monitoring)}: ${list.join(" | ")}`);
            assert.match(line, allowed);
        }
    });

    it("accepts an existing Prometheus Operator with its selector labels, and none", () => {
        const existing = validateConfig("dev", { ...base, monitoring: { mode: "existing", namespace: "observability", selectorLabels: { "prometheus.example.com/team": "platform" } } }).monitoring;
        assert.equal(existing.mode, "existing");
        assert.deepEqual(existing.selectorLabels, { "prometheus.example.com/team": "platform" });
        assert.equal(validateConfig("dev", { ...base, monitoring: { mode: "none" } }).monitoring.mode, "none");
    });
});

describe("config: alertReceiver (a secret)", () => {
    it("accepts Slack, PagerDuty and webhook receivers given as secrets", () => {
        assert.deepEqual(validateConfig("dev", { ...base, alertReceiver: SLACK }, ["alertReceiver"]).alertReceiver, SLACK);
        const pd = { type: "pagerduty", routingKey: "0123456789abcdef0123456789ABCDEF" };
        assert.deepEqual(validateConfig("dev", { ...base, alertReceiver: pd }, ["alertReceiver"]).alertReceiver, pd);
        const hook = { type: "webhook", url: "https://alerts.example.com/hook?token=abc" };
        assert.deepEqual(validateConfig("dev", { ...base, alertReceiver: hook }, ["alertReceiver"]).alertReceiver, hook);
    });

    it("refuses a receiver that is not a secret, and never prints its value", () => {
        const list = problems({ alertReceiver: SLACK });
        assert.equal(list.length, 1);
        assert.match(list[0], /^alertReceiver: \[secret\] must be a secret: pulumi config set --secret/);
        assert.ok(!list.join("\n").includes("hooks.slack.com"));
    });

    it("refuses bad receivers by key, without the secret values", () => {
        const cases: [unknown, RegExp][] = [
            [{ type: "slack", url: "http://hooks.slack.com/services/x" }, /alertReceiver.url: \[secret\] is not an https URL/],
            [{ type: "slack", url: "https://example.com/hook" }, /alertReceiver.url: \[secret\] is not a Slack incoming-webhook URL/],
            [{ type: "pagerduty", routingKey: "short" }, /alertReceiver.routingKey: \[secret\] is not a PagerDuty/],
            [{ type: "email", url: "https://x" }, /alertReceiver.type: "email" is not one of slack, pagerduty, webhook/],
            [{ type: "webhook", url: "https://x.example.com", token: "abc" }, /alertReceiver.token: \[secret\] is not a known setting/],
            ["https://hooks.slack.com/services/x", /alertReceiver: \[secret\] is not a JSON object/],
        ];
        for (const [alertReceiver, want] of cases) {
            const list = problems({ alertReceiver }, ["alertReceiver"]);
            assert.ok(list.some((l) => want.test(l)), `${JSON.stringify(alertReceiver)}: ${list.join(" | ")}`);
            const secrets = typeof alertReceiver === "string" ? [alertReceiver] : Object.entries(alertReceiver as object).filter(([k]) => k !== "type").map(([, v]) => String(v));
            for (const secret of secrets) assert.ok(!list.join("\n").includes(secret), `${secret} printed: ${list.join(" | ")}`);
        }
    });

    it("is only for an installed Alertmanager", () => {
        const list = problems({ alertReceiver: SLACK, monitoring: { mode: "none" } }, ["alertReceiver"]);
        assert.ok(list.some((l) => /^alertReceiver: \[secret\] is only for monitoring.mode install/.test(l)), list.join(" | "));
    });
});
