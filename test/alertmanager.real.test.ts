// The Alertmanager configuration the platform writes into its Secret, checked by Alertmanager's own
// tool: amtool check-config accepts it for every receiver type, and amtool's route test sends the
// platform's alerts to the receiver and the chart's Watchdog, InfoInhibitor and info alerts nowhere.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, it } from "node:test";
import { AlertReceiver } from "../config";
import { alertmanagerConfig } from "../components/monitoring";
import { run } from "./support/realpg";

const HAS_AMTOOL = (process.env.PATH ?? "").split(path.delimiter).some((d) => fs.existsSync(path.join(d, "amtool")));
const RECEIVERS: (AlertReceiver | undefined)[] = [
    undefined,
    { type: "slack", url: "https://hooks.slack.com/services/T000/B000/XXXX", channel: "#platform-alerts" },
    { type: "slack", url: "https://hooks.slack.com/services/T000/B000/XXXX" },
    { type: "pagerduty", routingKey: "0123456789abcdef0123456789abcdef" },
    { type: "webhook", url: "https://alerts.example.com/hook" },
];

async function amtool(config: string, ...args: string[]): Promise<{ status: number; out: string }> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "amtool-"));
    try {
        const file = path.join(dir, "alertmanager.yaml");
        fs.writeFileSync(file, config);
        const r = await run("amtool", args.map((a) => a.replace("$FILE", file)));
        return { status: r.status, out: r.stdout + r.stderr };
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}

describe("alertmanager configuration under amtool", { skip: HAS_AMTOOL ? false : "amtool is not installed (apt-get install prometheus-alertmanager)" }, () => {
    for (const receiver of RECEIVERS) {
        it(`is valid with ${receiver ? `a ${receiver.type} receiver${receiver.type === "slack" && !receiver.channel ? " (no channel)" : ""}` : "no receiver"}`, async () => {
            const config = alertmanagerConfig(receiver);
            const check = await amtool(config, "check-config", "$FILE");
            assert.equal(check.status, 0, check.out);
            assert.match(check.out, /SUCCESS/);
            const route = await amtool(config, "config", "routes", "test", "--config.file=$FILE", "alertname=PostgresDown", "severity=critical", "namespace=data");
            assert.equal(route.out.split("\n")[0].trim(), receiver ? "platform" : "null", route.out);
            for (const labels of [["alertname=Watchdog", "severity=none"], ["alertname=InfoInhibitor", "severity=none"], ["alertname=KubeQuotaAlmostFull", "severity=info"]]) {
                const r = await amtool(config, "config", "routes", "test", "--config.file=$FILE", ...labels);
                assert.equal(r.out.split("\n")[0].trim(), "null", `${labels.join(" ")}: ${r.out}`);
            }
            const warning = await amtool(config, "config", "routes", "test", "--config.file=$FILE", "alertname=PodCrashLooping", "severity=warning");
            assert.equal(warning.out.split("\n")[0].trim(), receiver ? "platform" : "null", warning.out);
        });
    }

    it("is refused when broken (the check is live)", async () => {
        const r = await amtool(alertmanagerConfig(undefined).replace('receiver: "null"', "receiver: nowhere"), "check-config", "$FILE");
        assert.notEqual(r.status, 0);
    });
});
