import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { postgresConf } from "../components/postgres";
import { cronMaxIntervalSeconds, cronProblem, didYouMean, isBinaryQuantity, isDns1123Label, isIpv4Cidr, maxConnectionsFor, memoryFor, quantityBytes, rawConfigFrom, RawConfig, TOP_LEVEL_KEYS, validateConfig, WORK_MEM_FLOOR_MIB } from "../config";
import { ADDON_VERSIONS } from "../components/addonVersions";
import { evaluateStack, EvaluationError } from "../scripts/evaluate";

const base: RawConfig = { region: "us-east-1" };

/** Asserts that the config is rejected with a message naming the key and the bad value. */
function rejects(raw: RawConfig, key: string, value: string, allowed?: RegExp): void {
    assert.throws(() => validateConfig("test", { ...base, ...raw }), (err: Error) => {
        const line = err.message.split("\n").find((l) => l.includes(`- ${key}: `));
        assert.ok(line, `no problem reported for ${key} in:\n${err.message}`);
        assert.ok(line.includes(value), `message does not show the value ${value}: ${line}`);
        if (allowed) assert.match(line, allowed);
        return true;
    });
}

function accepts(raw: RawConfig) {
    return validateConfig("test", { ...base, ...raw });
}

describe("config: defaults", () => {
    it("fills every section from defaults when only the region is set", () => {
        const c = accepts({});
        assert.equal(c.cluster.kubernetesVersion, "1.34");
        assert.equal(c.storage.className, "gp2-csi");
        assert.equal(c.postgres.imageTag, "17.6");
        assert.equal(c.postgres.majorVersion, 17);
        assert.equal(c.backup.databases[0], "mlflow");
        assert.equal(c.mlflow.exposure, "none");
        assert.equal(c.protectData, false);
    });
    it("requires aws:region", () => rejects({ region: undefined }, "aws:region", "undefined", /is required/));
});

describe("config: each rule accepts a good value and names the key of a bad one", () => {
    const cases: { key: string; good: RawConfig; bad: RawConfig; shown: string; allowed?: RegExp }[] = [
        { key: "aws:region", good: { region: "eu-west-1" }, bad: { region: "Europe" }, shown: '"Europe"' },
        { key: "cluster.kubernetesVersion", good: { cluster: { kubernetesVersion: "1.33" } }, bad: { cluster: { kubernetesVersion: "1.34.2" } }, shown: '"1.34.2"' },
        { key: "cluster.vpcCidr", good: { cluster: { vpcCidr: "10.1.0.0/16" } }, bad: { cluster: { vpcCidr: "10.1.0.1/16" } }, shown: '"10.1.0.1/16"', allowed: /prefix from \/16 to \/20/ },
        { key: "cluster.vpcCidr", good: { cluster: { vpcCidr: "10.1.0.0/20" } }, bad: { cluster: { vpcCidr: "10.0.0.0/8" } }, shown: '"10.0.0.0/8"' },
        { key: "cluster.availabilityZoneCount", good: { cluster: { availabilityZoneCount: 3, nodeMinSize: 3, nodeDesiredSize: 3, nodeMaxSize: 3 } }, bad: { cluster: { availabilityZoneCount: 1 } }, shown: "1", allowed: /from 2 to 3/ },
        { key: "cluster.natGateways", good: { cluster: { natGateways: "perAz" } }, bad: { cluster: { natGateways: "none" } }, shown: '"none"', allowed: /single, perAz/ },
        { key: "cluster.nodeInstanceTypes[0]", good: { cluster: { nodeInstanceTypes: ["m6i.large", "m5.large"] } }, bad: { cluster: { nodeInstanceTypes: ["large"] } }, shown: '"large"' },
        { key: "cluster.nodeDesiredSize", good: { cluster: { nodeMinSize: 2, nodeDesiredSize: 2, nodeMaxSize: 2 } }, bad: { cluster: { nodeMinSize: 3, nodeDesiredSize: 2, nodeMaxSize: 4 } }, shown: "2", allowed: /nodeMinSize \(3\) <= nodeDesiredSize <= nodeMaxSize \(4\)/ },
        { key: "cluster.nodeDesiredSize", good: { cluster: { nodeDesiredSize: "3" } }, bad: { cluster: { nodeDesiredSize: 2.5 } }, shown: "2.5", allowed: /whole number/ },
        { key: "cluster.nodeAmiType", good: { cluster: { nodeInstanceTypes: ["m7g.large"], nodeAmiType: "AL2023_ARM_64_STANDARD" } }, bad: { cluster: { nodeInstanceTypes: ["m7g.large"] } }, shown: '"AL2023_x86_64_STANDARD"', allowed: /Graviton/ },
        { key: "cluster.publicAccessCidrs[0]", good: { cluster: { publicAccessCidrs: ["100.24.0.0/16"] } }, bad: { cluster: { publicAccessCidrs: ["100.24.0.7"] } }, shown: '"100.24.0.7"' },
        { key: "cluster.logTypes[0]", good: { cluster: { logTypes: [] } }, bad: { cluster: { logTypes: ["everything"] } }, shown: '"everything"', allowed: /api, audit/ },
        { key: "cluster.endpointPublicAccess", good: { cluster: { endpointPublicAccess: "false" } }, bad: { cluster: { endpointPublicAccess: "no" } }, shown: '"no"', allowed: /true or false/ },
        { key: "cluster.nodeSize", good: {}, bad: { cluster: { nodeSize: 3 } }, shown: "3", allowed: /not a known setting/ },
        { key: "cluster.nodeMinsize", good: {}, bad: { cluster: { nodeMinsize: 3 } }, shown: "3", allowed: /did you mean cluster\.nodeMinSize\?/ },
        { key: "protectdata", good: { protectData: "true" }, bad: { protectdata: true }, shown: "true", allowed: /is not a known setting: did you mean protectData\?/ },
        { key: "bakup", good: {}, bad: { bakup: { schedule: "@daily" } }, shown: "@daily", allowed: /did you mean backup\?/ },
        { key: "clustr", good: {}, bad: { clustr: {} }, shown: "{}", allowed: /did you mean cluster\?/ },
        { key: "monitoringStack", good: {}, bad: { monitoringStack: true }, shown: "true", allowed: /is not a known setting \(known: protectData, allowDataLoss, cluster/ },
        { key: "postgres", good: {}, bad: { postgres: 5 }, shown: "5", allowed: /is not an object of settings/ },
        { key: "storage.className", good: { storage: { className: "ebs-gp2" } }, bad: { storage: { className: "gp2" } }, shown: '"gp2"', allowed: /EKS owns gp2/ },
        { key: "storage.className", good: {}, bad: { storage: { className: "GP2_CSI" } }, shown: '"GP2_CSI"' },
        { key: "storage.reclaimPolicy", good: { storage: { reclaimPolicy: "Retain" } }, bad: { storage: { reclaimPolicy: "Recycle" } }, shown: '"Recycle"', allowed: /Delete, Retain/ },
        { key: "storage.kmsKeyArn", good: { storage: { kmsKeyArn: "arn:aws:kms:us-east-1:123456789012:key/0e4c6a1b-1f2e-4c3d-9a8b-7c6d5e4f3a2b" } }, bad: { storage: { kmsKeyArn: "alias/ebs" } }, shown: '"alias/ebs"' },
        { key: "postgres.storageSize", good: { postgres: { storageSize: "100Gi" } }, bad: { postgres: { storageSize: "20GB" } }, shown: '"20GB"', allowed: /Kubernetes quantity \(e\.g\. 20Gi\)/ },
        { key: "postgres.storageSize", good: { postgres: { storageSize: "1Gi" } }, bad: { postgres: { storageSize: "512Mi" } }, shown: '"512Mi"', allowed: /1Gi/ },
        { key: "postgres.imageTag", good: { postgres: { imageTag: "16.10" } }, bad: { postgres: { imageTag: "latest" } }, shown: '"latest"', allowed: /pinned/ },
        { key: "postgres.namespace", good: { postgres: { namespace: "db-1" } }, bad: { postgres: { namespace: "Data" } }, shown: '"Data"', allowed: /DNS-1123/ },
        { key: "postgres.resources.memoryRequest", good: { postgres: { resources: { memoryRequest: "2Gi", memoryLimit: "2Gi" } } }, bad: { postgres: { resources: { memoryRequest: "4Gi", memoryLimit: "2Gi" } } }, shown: '"4Gi"', allowed: /memoryLimit/ },
        { key: "postgres.resources.cpuRequest", good: { postgres: { resources: { cpuRequest: "1.5" } } }, bad: { postgres: { resources: { cpuRequest: "1 core" } } }, shown: '"1 core"' },
        { key: "postgres.maxConnections", good: { postgres: { maxConnections: 150 } }, bad: { postgres: { maxConnections: 5 } }, shown: "5" },
        { key: "backup.schedule", good: { backup: { schedule: "*/15 1-5 * JAN-MAR mon,fri" } }, bad: { backup: { schedule: "0 2 * *" } }, shown: '"0 2 * *"', allowed: /has 4 fields/ },
        { key: "backup.schedule", good: { backup: { schedule: "@daily" } }, bad: { backup: { schedule: "61 2 * * *" } }, shown: '"61 2 * * *"', allowed: /minute/ },
        { key: "backup.schedule", good: {}, bad: { backup: { schedule: "CRON_TZ=UTC 0 2 * * *" } }, shown: "CRON_TZ", allowed: /timeZone/ },
        { key: "backup.verifySchedule", good: { backup: { verifySchedule: "0 4 * * 0" } }, bad: { backup: { verifySchedule: "0 4 * * 8" } }, shown: '"0 4 * * 8"', allowed: /day of week/ },
        { key: "backup.verifySchedule", good: { backup: { verifySchedule: "0 4 * * 6" } }, bad: { backup: { verifySchedule: "0 4 * * 7" } }, shown: '"0 4 * * 7"', allowed: /day of week: end of range \(7\) above maximum \(6\)/ },
        { key: "backup.schedule", good: { backup: { schedule: "0 2 29 2 *" } }, bad: { backup: { schedule: "0 2 31 2 *" } }, shown: '"0 2 31 2 *"', allowed: /never runs/ },
        { key: "backup.timeZone", good: { backup: { timeZone: "Europe/Berlin" } }, bad: { backup: { timeZone: "Mars/Olympus" } }, shown: '"Mars/Olympus"', allowed: /IANA/ },
        { key: "backup.timeZone", good: { backup: { timeZone: "America/Argentina/Buenos_Aires" } }, bad: { backup: { timeZone: "europe/berlin" } }, shown: '"europe/berlin"', allowed: /did you mean "Europe\/Berlin"\?/ },
        { key: "backup.timeZone", good: { backup: { timeZone: "UTC" } }, bad: { backup: { timeZone: "Local" } }, shown: '"Local"', allowed: /IANA/ },
        { key: "backup.retentionDays", good: { backup: { retentionDays: 1 } }, bad: { backup: { retentionDays: 0 } }, shown: "0", allowed: /from 1 to 3650/ },
        { key: "backup.databases", good: { backup: { databases: ["all"] } }, bad: { backup: { databases: ["all", "mlflow"] } }, shown: "all" },
        { key: "backup.databases[0]", good: { backup: { databases: ["mlflow", "feature_store"] } }, bad: { backup: { databases: ["ml-flow"] } }, shown: '"ml-flow"' },
        { key: "backup.encryption", good: { backup: { encryption: "AES256" } }, bad: { backup: { encryption: "none" } }, shown: '"none"', allowed: /aws:kms, AES256/ },
        { key: "backup.objectLockDays", good: { backup: { objectLock: true, objectLockDays: 7, retentionDays: 7 } }, bad: { backup: { objectLock: true, objectLockDays: 30, retentionDays: 7 } }, shown: "30", allowed: /retentionDays \(7\)/ },
        { key: "backup.scratchSize", good: { backup: { scratchSize: "500Gi" } }, bad: { backup: { scratchSize: "lots" } }, shown: '"lots"' },
        { key: "backup.awsCliImageTag", good: { backup: { awsCliImageTag: "2.27.26" } }, bad: { backup: { awsCliImageTag: "latest" } }, shown: '"latest"' },
        { key: "backup.lockTimeout", good: { backup: { lockTimeout: "30s" } }, bad: { backup: { lockTimeout: "30 seconds" } }, shown: '"30 seconds"', allowed: /PostgreSQL duration/ },
        { key: "backup.statementTimeout", good: { backup: { statementTimeout: "0" } }, bad: { backup: { statementTimeout: "2hours" } }, shown: '"2hours"', allowed: /PostgreSQL duration/ },
        { key: "mlflow.replicas", good: { mlflow: { replicas: 2 } }, bad: { mlflow: { replicas: 0 } }, shown: "0" },
        { key: "mlflow.namespace", good: { mlflow: { namespace: "tracking" } }, bad: { mlflow: { namespace: "data" } }, shown: '"data"', allowed: /postgres\.namespace/ },
        { key: "mlflow.exposure", good: { mlflow: { exposure: "ingress", host: "mlflow.example.com", ingressClassName: "alb", ingressTlsSecretName: "mlflow-tls" } }, bad: { mlflow: { exposure: "ingress", host: "mlflow.example.com", ingressClassName: "alb" } }, shown: '"ingress"', allowed: /needs exactly one TLS setting/ },
        { key: "mlflow.loadBalancerSourceRanges", good: { mlflow: { exposure: "loadBalancer", host: "mlflow.example.com", tlsCertificateArn: "arn:aws:acm:us-east-1:123456789012:certificate/0e4c6a1b-1f2e-4c3d-9a8b-7c6d5e4f3a2b", loadBalancerSourceRanges: ["100.24.0.0/16"] } }, bad: { mlflow: { exposure: "loadBalancer", host: "mlflow.example.com", tlsCertificateArn: "arn:aws:acm:us-east-1:123456789012:certificate/0e4c6a1b-1f2e-4c3d-9a8b-7c6d5e4f3a2b" } }, shown: "[]" },
        { key: "mlflow.host", good: {}, bad: { mlflow: { host: "https://mlflow" } }, shown: '"https://mlflow"' },
        { key: "protectData", good: { protectData: true }, bad: { protectData: "yes" }, shown: '"yes"' },
    ];
    for (const c of cases) {
        it(`${c.key}: accepts ${JSON.stringify(c.good)}, rejects ${JSON.stringify(c.bad)}`, () => {
            accepts(c.good);
            rejects(c.bad, c.key, c.shown, c.allowed);
        });
    }
});

describe("config: errors", () => {
    it("lists every bad key in one error, naming the stack", () => {
        assert.throws(
            () => validateConfig("prod", { region: "us-east-1", postgres: { storageSize: "20GB" }, backup: { retentionDays: -1, schedule: "daily" } }),
            (err: Error) => {
                assert.match(err.message, /^Invalid configuration for stack "prod":/);
                assert.match(err.message, /postgres\.storageSize: "20GB" is not a Kubernetes quantity \(e\.g\. 20Gi\)/);
                assert.match(err.message, /backup\.retentionDays: -1/);
                assert.match(err.message, /backup\.schedule: "daily" has 1 fields/);
                return true;
            },
        );
    });
    it("rejects a section that is not an object", () => rejects({ postgres: "big" }, "postgres", '"big"', /object of settings/));
});

describe("config: validators", () => {
    it("DNS-1123 labels", () => {
        for (const ok of ["data", "a", "ml-flow-1"]) assert.ok(isDns1123Label(ok), ok);
        for (const bad of ["", "-a", "a-", "A", "a_b", "a".repeat(64)]) assert.ok(!isDns1123Label(bad), bad);
    });
    it("binary quantities", () => {
        for (const ok of ["1Gi", "512Mi", "20Gi", "1Ti"]) assert.ok(isBinaryQuantity(ok), ok);
        for (const bad of ["20GB", "20G", "0Gi", "1.5Gi", "Gi", "20 Gi"]) assert.ok(!isBinaryQuantity(bad), bad);
    });
    it("IPv4 CIDRs with zero host bits", () => {
        for (const ok of ["0.0.0.0/0", "10.0.0.0/16", "203.0.113.0/24", "198.51.100.7/32"]) assert.ok(isIpv4Cidr(ok), ok);
        for (const bad of ["10.0.0.1/16", "256.0.0.0/8", "10.0.0.0/33", "10.0.0.0", "::/0"]) assert.ok(!isIpv4Cidr(bad), bad);
    });
    it("cron schedules with valid field ranges", () => {
        for (const ok of ["0 2 * * *", "*/5 * * * *", "0 0 1 1 *", "0 4 * * 0", "30 1 1,15 * MON-FRI", "@weekly"]) assert.equal(cronProblem(ok), undefined, ok);
        for (const bad of ["60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8", "*/0 * * * *", "5-1 * * * *", "* * * * * *", "@often"]) assert.ok(cronProblem(bad), bad);
    });
});

// robfig/cron v3's ParseStandard, which the API server validates spec.schedule with, and
// Schedule.Next, which the CronJob controller runs it by.
describe("config: cron schedules as Kubernetes parses them", () => {
    it("accepts what ParseStandard accepts", () => {
        for (const ok of [
            "0 2 * * *", "*/15 1-5 * JAN-MAR mon,fri", "0 0 * * SUN", "0 0 * * sat", "5/10 * * * *", "0 0 ? * 1-5", "0 0 1-31/2 * *",
            "0 4 * * 0-6", "0 0 * Dec *", "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly", "@every 1h30m",
            "  0   2 * *   *  ", "0 2 29 2 *", "0 4 31 1-12 *", "0 2 31 2 1",
        ]) assert.equal(cronProblem(ok), undefined, ok);
    });
    it("gives every schedule it accepts an interval, as the alert thresholds need (one parser for both)", () => {
        // A second, looser parser used to compute intervals: "@every 1h30m" passed validation and
        // then failed the program when the alerts were built.
        for (const ok of [
            "0 2 * * *", "*/15 1-5 * JAN-MAR mon,fri", "0 0 * * SUN", "5/10 * * * *", "0 0 ? * 1-5", "0 0 1-31/2 * *", "0 0 * Dec *",
            "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly", "  0   2 * *   *  ", "0 4 31 1-12 *", "0 2 31 2 1",
        ]) assert.ok(cronMaxIntervalSeconds(ok) > 0, ok);
        assert.equal(cronMaxIntervalSeconds("@every 1h30m"), 5400);
        assert.equal(cronMaxIntervalSeconds("@every 1.5h"), 5400);
        assert.equal(cronMaxIntervalSeconds("@every 90s"), 90);
        assert.equal(cronMaxIntervalSeconds("@every 500ms"), 1, "robfig rounds up to a second");
        assert.equal(cronMaxIntervalSeconds("0 2 29 2 *"), (3 * 365 + 366) * 86_400, "leap days only");
        assert.equal(cronMaxIntervalSeconds("0 0 */2 * *"), 2 * 86_400, "*/2 restricts the day of month: not a wildcard");
        assert.equal(cronMaxIntervalSeconds("0 0 1 * */1"), 31 * 86_400, "*/1 still counts as *: the 1st AND any weekday");
        const stack = validateConfig("dev", { region: "us-east-1", backup: { schedule: "@every 6h", baseBackupSchedule: "@every 12h" } });
        assert.equal(cronMaxIntervalSeconds(stack.backup.schedule), 6 * 3600);
    });

    it("refuses what ParseStandard refuses, saying why", () => {
        const cases: [string, RegExp][] = [
            ["* * * * 7", /day of week: end of range \(7\) above maximum \(6\)/],
            ["0 0 * * 1-7", /day of week: end of range \(7\) above maximum \(6\)/],
            ["0 0 * * SUN-7", /above maximum/],
            ["0 0 * FOO *", /month: failed to parse int from "FOO"/],
            ["0 0 * * MONDAY", /day of week: failed to parse int/],
            ["1-2-3 * * * *", /too many hyphens/],
            ["*/2/3 * * * *", /too many slashes/],
            ["1,,2 * * * *", /failed to parse int from ""/],
            ["0 0 * * 5-1", /beginning of range \(5\) beyond end of range \(1\)/],
            ["*/0 * * * *", /step of range should be a positive number/],
            ["0 0 0 * *", /day of month: beginning of range \(0\) below minimum \(1\)/],
            ["0 2 * *", /has 4 fields; expected exactly 5/],
            ["0 0 2 * * *", /has 6 fields/],
            ["@Daily", /not a recognized descriptor/],
            ["@every soon", /not a Go duration/],
            // robfig matches descriptors on the raw string, and names are months and days only.
            ["@daily ", /not a recognized descriptor/],
            [" @daily", /has 1 fields/],
            ["@every  1h", /not a Go duration/],
            ["0 0 * constructor *", /month: failed to parse int from "constructor"/],
            ["0 0 * * __proto__", /day of week: failed to parse int/],
            ["TZ=UTC 0 2 * * *", /use timeZone/],
        ];
        for (const [bad, why] of cases) assert.match(cronProblem(bad) ?? "accepted", why, bad);
    });
    it("refuses a schedule that can never fire (day of month in no listed month)", () => {
        assert.match(cronProblem("0 2 31 2 *")!, /never runs: no month in "2" has day "31"/);
        assert.match(cronProblem("0 4 31 4,6,9,11 *")!, /never runs/);
        assert.match(cronProblem("0 4 30,31 FEB *")!, /never runs/);
        // A day-of-week field that is not * makes robfig OR the two day fields: that fires on Mondays.
        assert.equal(cronProblem("0 2 31 2 MON"), undefined);
        // */2 is a restriction, so the day-of-week field is not *: ORed, fires.
        assert.equal(cronProblem("0 2 31 2 */2"), undefined);
    });
});

describe("config: unknown top-level keys and values as the CLI passes them", () => {
    it("knows exactly the sections the program reads", () => {
        assert.deepEqual([...TOP_LEVEL_KEYS], ["protectData", "allowDataLoss", "cluster", "storage", "postgres", "backup", "mlflow", "monitoring", "alertReceiver"]);
        assert.equal(didYouMean("protectdata", TOP_LEVEL_KEYS), "protectData");
        assert.equal(didYouMean("clustr", TOP_LEVEL_KEYS), "cluster");
        assert.equal(didYouMean("monitorng", TOP_LEVEL_KEYS), "monitoring");
        assert.equal(didYouMean("logging", TOP_LEVEL_KEYS), undefined);
    });

    it("reads every key of the project's namespace, and only those, JSON where it is JSON", () => {
        const raw = rawConfigFrom({
            "aws:region": "us-east-1", "aws:profile": "ops", "other-project:cluster": "{}",
            "mlflow-platform:protectData": "yes", "mlflow-platform:postgres": "5", "mlflow-platform:bakup": '{"schedule":"@daily"}',
            "mlflow-platform:cluster": '{"nodeMinSize":"2"}',
        }, "mlflow-platform");
        assert.deepEqual(raw, { region: "us-east-1", awsProfile: "ops", protectData: "yes", postgres: 5, bakup: { schedule: "@daily" }, cluster: { nodeMinSize: "2" } });
        assert.throws(() => validateConfig("dev", raw), (err: Error) => {
            assert.match(err.message, /- protectData: "yes" is not true or false/);
            assert.match(err.message, /- postgres: 5 is not an object of settings/);
            assert.match(err.message, /- bakup: \{"schedule":"@daily"\} is not a known setting: did you mean backup\?/);
            assert.equal(err.message.split("\n").length, 4, err.message);
            return true;
        });
    });

    it("stops the program with the collected message, not the SDK's JSON error, for typos and scalar sections", async () => {
        await assert.rejects(
            evaluateStack("dev", { "mlflow-platform:protectdata": true, "mlflow-platform:protectData": "yes", "mlflow-platform:postgres": 5 }),
            (err: Error) => {
                assert.ok(err instanceof EvaluationError);
                assert.match(err.message, /^Invalid configuration for stack "dev":/);
                assert.match(err.message, /- protectdata: true is not a known setting: did you mean protectData\?/);
                assert.match(err.message, /- protectData: "yes" is not true or false/);
                assert.match(err.message, /- postgres: 5 is not an object of settings/);
                assert.doesNotMatch(err.message, /JSON|Unexpected token/);
                return true;
            },
        );
    });
});

describe("config: postgres.maxConnections fits postgres.resources.memoryLimit", () => {
    it("refuses connections the memory limit cannot serve, naming what to raise", () => {
        rejects({ postgres: { maxConnections: 500 } }, "postgres.maxConnections", "500", /raise postgres\.resources\.memoryLimit \(and memoryRequest\) to at least 3Gi, or lower postgres\.maxConnections to 176 or fewer/);
        accepts({ postgres: { maxConnections: 500, resources: { memoryRequest: "3Gi", memoryLimit: "3Gi" } } });
        accepts({ postgres: { maxConnections: 176 } });
        rejects({ postgres: { maxConnections: 177 } }, "postgres.maxConnections", "177");
        rejects({ postgres: { maxConnections: 40, resources: { memoryRequest: "256Mi", memoryLimit: "256Mi" } } }, "postgres.maxConnections", "40", /at least 512Mi/);
    });

    it("uses the sizes postgresConf writes: at the limit, shared memory plus a work_mem floor per connection fits", () => {
        for (const limit of ["256Mi", "1Gi", "4Gi", "16Gi", "64Gi"]) {
            const n = maxConnectionsFor(limit);
            const conf = postgresConf(limit, n);
            const mb = (k: string) => Number(new RegExp(`^${k} = (\\d+)MB$`, "m").exec(conf)![1]);
            assert.ok(mb("work_mem") >= WORK_MEM_FLOOR_MIB, limit);
            assert.ok((mb("shared_buffers") + mb("maintenance_work_mem") + n * WORK_MEM_FLOOR_MIB) * 1024 ** 2 <= quantityBytes(limit), limit);
            assert.ok((mb("shared_buffers") + mb("maintenance_work_mem") + (n + 1) * WORK_MEM_FLOOR_MIB) * 1024 ** 2 > quantityBytes(limit) - 1024 ** 2 * WORK_MEM_FLOOR_MIB, `${limit}: ${n} is the most`);
            assert.ok(maxConnectionsFor(memoryFor(n)) >= n);
        }
    });
});

describe("config: production stacks keep their data", () => {
    const vpn = { publicAccessCidrs: ["100.24.0.0/16"] };
    it("refuses protectData false in stack prod unless allowDataLoss says so", () => {
        assert.throws(() => validateConfig("prod", { ...base, protectData: false, cluster: vpn, storage: { reclaimPolicy: "Retain" } }), /- protectData: false must be true in stack "prod".*allowDataLoss: true/);
        validateConfig("prod", { ...base, protectData: false, allowDataLoss: true, cluster: vpn, storage: { reclaimPolicy: "Retain" } });
    });
    it("refuses reclaimPolicy Delete where data is protected (prod, or protectData: true)", () => {
        assert.throws(() => validateConfig("prod", { ...base, protectData: true, cluster: vpn, storage: { reclaimPolicy: "Delete" } }), /- storage\.reclaimPolicy: "Delete" must be Retain in stack "prod"/);
        rejects({ protectData: true, storage: { reclaimPolicy: "Delete" } }, "storage.reclaimPolicy", '"Delete"', /must be Retain in a stack with protectData: true/);
        accepts({ protectData: true, allowDataLoss: true, storage: { reclaimPolicy: "Delete" } });
        assert.equal(accepts({ protectData: true }).storage.reclaimPolicy, "Retain", "the default follows protectData");
        assert.equal(accepts({}).storage.reclaimPolicy, "Delete");
        rejects({ allowDataLoss: "maybe" }, "allowDataLoss", '"maybe"', /true or false/);
    });
});

describe("config: the public API endpoint lets the operators in", () => {
    it("refuses the documentation ranges anywhere, saying what to put there", () => {
        for (const doc of ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "203.0.113.64/26", "192.0.2.7/32"]) {
            rejects({ cluster: { publicAccessCidrs: ["100.24.0.0/16", doc] } }, "cluster.publicAccessCidrs[1]", doc, /documentation range .*unreachable; list the egress CIDRs of your VPN or office/);
        }
    });
    it("refuses them for MLflow's load balancer too", () => {
        const lb = { exposure: "loadBalancer", host: "mlflow.example.com", tlsCertificateArn: "arn:aws:acm:us-east-1:123456789012:certificate/0e4c6a1b-1f2e-4c3d-9a8b-7c6d5e4f3a2b" };
        rejects({ mlflow: { ...lb, loadBalancerSourceRanges: ["100.24.0.0/16", "198.51.100.0/24"] } }, "mlflow.loadBalancerSourceRanges[1]", "198.51.100.0/24", /documentation range 198\.51\.100\.0\/24.*MLflow would be unreachable/);
        assert.deepEqual(accepts({ mlflow: { ...lb, loadBalancerSourceRanges: ["100.24.0.0/16"] } }).mlflow.loadBalancerSourceRanges, ["100.24.0.0/16"]);
    });
    it("requires the operator's CIDRs in prod and refuses 0.0.0.0/0 there", () => {
        const prod = (cluster: object) => validateConfig("prod", { ...base, protectData: true, cluster });
        assert.throws(() => prod({}), /- cluster\.publicAccessCidrs: undefined is required in stack prod .*checkip\.amazonaws\.com/);
        assert.throws(() => prod({ publicAccessCidrs: ["100.24.0.0/16", "0.0.0.0/0"] }), /must not contain 0\.0\.0\.0\/0 in stack prod/);
        assert.deepEqual(prod({ publicAccessCidrs: ["100.24.0.0/16"] }).cluster.publicAccessCidrs, ["100.24.0.0/16"]);
        assert.equal(prod({ endpointPublicAccess: false }).cluster.endpointPublicAccess, false, "a private endpoint needs no allow-list");
        assert.deepEqual(accepts({}).cluster.publicAccessCidrs, ["0.0.0.0/0"], "dev keeps the open default");
    });
    it("the committed prod stack file does not deploy until the operator sets publicAccessCidrs", async () => {
        await assert.rejects(evaluateStack("prod"), /cluster\.publicAccessCidrs: undefined is required in stack prod/);
    });
});

describe("config: cluster access, versions, sizes and zones", () => {
    const role = "arn:aws:iam::123456789012:role/ci-deploy";
    it("validates access entry principals", () => {
        const c = accepts({ cluster: { adminPrincipalArns: [role, "arn:aws:iam::123456789012:user/alice"], viewerPrincipalArns: ["arn:aws:iam::123456789012:role/team/auditors"] } }).cluster;
        assert.deepEqual(c.adminPrincipalArns, [role, "arn:aws:iam::123456789012:user/alice"]);
        assert.deepEqual(accepts({}).cluster.adminPrincipalArns, []);
        rejects({ cluster: { adminPrincipalArns: ["arn:aws:sts::123456789012:assumed-role/ci-deploy/session"] } }, "cluster.adminPrincipalArns[0]", "assumed-role", /not an IAM role or user ARN .*assumed-role session ARN cannot hold an access entry/);
        rejects({ cluster: { viewerPrincipalArns: ["ci-deploy"] } }, "cluster.viewerPrincipalArns[0]", '"ci-deploy"', /IAM role or user ARN/);
        rejects({ cluster: { adminPrincipalArns: [role, role] } }, "cluster.adminPrincipalArns", "ci-deploy", /duplicate/);
        rejects({ cluster: { adminPrincipalArns: [role], viewerPrincipalArns: [role] } }, "cluster.viewerPrincipalArns", "ci-deploy", /also in cluster\.adminPrincipalArns/);
    });

    it("upgrades one minor at a time when the previous version is known, and never downgrades", () => {
        accepts({ cluster: { kubernetesVersion: "1.34", previousKubernetesVersion: "1.33" } });
        accepts({ cluster: { kubernetesVersion: "1.34", previousKubernetesVersion: "1.34" } });
        rejects({ cluster: { kubernetesVersion: "1.34", previousKubernetesVersion: "1.32" } }, "cluster.kubernetesVersion", '"1.34"', /2 minors past cluster\.previousKubernetesVersion \(1\.32\): EKS upgrades one minor at a time; set 1\.33 first/);
        rejects({ cluster: { kubernetesVersion: "1.33", previousKubernetesVersion: "1.34" } }, "cluster.kubernetesVersion", '"1.33"', /cannot downgrade/);
        rejects({ cluster: { previousKubernetesVersion: "1.34.1" } }, "cluster.previousKubernetesVersion", '"1.34.1"', /minor version/);
    });

    it("takes add-on versions from the table row, lets config override each, and refuses a minor without a row unless all are given", () => {
        assert.deepEqual(accepts({ cluster: { kubernetesVersion: "1.33" } }).cluster.addonVersions, ADDON_VERSIONS["1.33"]);
        const over = accepts({ cluster: { addonVersions: { coredns: "v1.12.4-eksbuild.1" } } }).cluster.addonVersions;
        assert.deepEqual(over, { ...ADDON_VERSIONS["1.34"], coredns: "v1.12.4-eksbuild.1" });
        rejects({ cluster: { addonVersions: { coredns: "1.12.4" } } }, "cluster.addonVersions.coredns", '"1.12.4"', /eksbuild/);
        rejects({ cluster: { addonVersions: { kube_proxy: "v1.34.6-eksbuild.2" } } }, "cluster.addonVersions.kube_proxy", "v1.34.6", /did you mean cluster\.addonVersions\.kube-proxy\?/);
        rejects({ cluster: { kubernetesVersion: "1.30" } }, "cluster.addonVersions", "{}", /no version for vpc-cni, kube-proxy, coredns, aws-ebs-csi-driver on Kubernetes 1\.30.*describe-addon-versions --kubernetes-version 1\.30/);
        const all = { "vpc-cni": "v1.21.1-eksbuild.7", "kube-proxy": "v1.30.14-eksbuild.28", coredns: "v1.11.4-eksbuild.33", "aws-ebs-csi-driver": "v1.66.0-eksbuild.1" };
        assert.deepEqual(accepts({ cluster: { kubernetesVersion: "1.30", addonVersions: all } }).cluster.addonVersions, all);
        for (const [minor, row] of Object.entries(ADDON_VERSIONS)) {
            for (const v of Object.values(row)) assert.match(v, /^v[0-9]+\.[0-9]+\.[0-9]+-eksbuild\.[0-9]+$/, minor);
            assert.ok(row["kube-proxy"].startsWith(`v${minor}.`), `kube-proxy follows the minor ${minor}`);
        }
    });

    it("sizes node groups as config says: min <= desired <= max, a node per zone, desiredSize owned by config unless an autoscaler is named", () => {
        assert.equal(accepts({}).cluster.nodeAutoscaler, "none");
        assert.equal(accepts({ cluster: { nodeAutoscaler: "clusterAutoscaler" } }).cluster.nodeAutoscaler, "clusterAutoscaler");
        rejects({ cluster: { nodeAutoscaler: "karpenter" } }, "cluster.nodeAutoscaler", '"karpenter"', /none, clusterAutoscaler/);
        rejects({ cluster: { nodeMinSize: 4, nodeDesiredSize: 3, nodeMaxSize: 5 } }, "cluster.nodeDesiredSize", "3", /nodeMinSize \(4\) <= nodeDesiredSize/);
        rejects({ cluster: { nodeMinSize: 1, nodeDesiredSize: 2 } }, "cluster.nodeMinSize", "1", /at least the number of zones \(2\)/);
        rejects({ cluster: { availabilityZoneCount: 3, nodeMinSize: 2, nodeDesiredSize: 3, nodeMaxSize: 6 } }, "cluster.nodeMinSize", "2", /zones \(3\)/);
    });

    it("pins availability zones of the stack's region", () => {
        const c = accepts({ cluster: { availabilityZones: ["us-east-1b", "us-east-1d", "us-east-1f"], nodeMinSize: 3, nodeDesiredSize: 3, nodeMaxSize: 3 } }).cluster;
        assert.deepEqual([c.availabilityZones, c.availabilityZoneCount], [["us-east-1b", "us-east-1d", "us-east-1f"], 3]);
        assert.equal(accepts({}).cluster.availabilityZones, undefined);
        rejects({ cluster: { availabilityZones: ["eu-west-1a", "eu-west-1b"] } }, "cluster.availabilityZones[0]", "eu-west-1a", /not an availability zone of aws:region us-east-1/);
        rejects({ cluster: { availabilityZones: ["us-east-1-wl1-bos-wlz-1", "us-east-1a"] } }, "cluster.availabilityZones[0]", "wlz", /availability zone/);
        rejects({ cluster: { availabilityZones: ["us-east-1a", "us-east-1b"], availabilityZoneCount: 3 } }, "cluster.availabilityZoneCount", "3", /must equal the number of cluster\.availabilityZones \(2\)/);
    });

    it("passes aws:profile on, and keeps project keys from shadowing aws: ones", () => {
        assert.equal(accepts({ awsProfile: "ops" }).awsProfile, "ops");
        assert.equal(accepts({}).awsProfile, undefined);
        const raw = rawConfigFrom({ "aws:region": "us-east-1", "mlflow-platform:region": "eu-west-1" }, "mlflow-platform");
        assert.equal(raw.region, "us-east-1");
        rejects(raw, "mlflow-platform:region", "eu-west-1", /is not a known setting/);
    });
});
