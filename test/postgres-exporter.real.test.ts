// The metrics sidecar's setup for real: Debian's postgres_exporter against PostgreSQL 15, connected
// as the `metrics` role created exactly as the product creates it (init-db.sh, then the role
// reconcile script with the SQL generated from METRICS_ROLE), with the sidecar's environment and
// flags. Every pg_* metric the alert rules and dashboards read must be in its scrape.
//
// Version note: Debian ships postgres_exporter 0.11.1; the pod runs the pinned v0.20.1 image
// (EXPORTER_IMAGE). 0.20 moved pg_settings, pg_stat_activity and pg_stat_archiver from the legacy
// query map into standalone collectors with the same metric names and labels (0.20.1
// collector/pg_setting.go, pg_stat_activity.go, pg_stat_archiver.go), and pg_up, pg_locks_count,
// pg_database_size_bytes and pg_stat_database_* are collectors in both. The rules and dashboards use
// only those names and the labels both versions share (datname, state, mode); none relies on
// 0.11's `server` label, which 0.20 dropped.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { extraRolesSql, rolePasswordEnv } from "../components/databaseRoles";
import { roleSecretName } from "../components/postgres";
import { EXPORTER_ARGS, exporterEnv, METRICS_ROLE } from "../components/postgresMetrics";
import { assertNoLeftovers, freePort, initDbEnv, makeTempDir, PG_MAJOR, REPO, run, sleep, sourceInitDb, startPg, type PgServer } from "./support/realpg";
import { usedMetricNames } from "./support/monitoring";

const EXPORTER = "prometheus-postgres-exporter";
const HAS_EXPORTER = (process.env.PATH ?? "").split(path.delimiter).some((d) => fs.existsSync(path.join(d, EXPORTER)));
const RECONCILE = path.join(REPO, "components/postgres/scripts/reconcile-roles.sh");
// What the product generates (RandomPassword, 32 letters and digits).
const METRICS_PW = "Xq7RmT2vLp9WcZ4kNs8BdJ3hGf6YaE1u";

/** The sidecar's env with the Secret references resolved the way the kubelet does. */
function sidecarEnv(port: number): NodeJS.ProcessEnv {
    const secret = { username: METRICS_ROLE.name, password: METRICS_PW };
    const env: NodeJS.ProcessEnv = {};
    for (const e of exporterEnv(roleSecretName(METRICS_ROLE.name), port)) {
        const ref = (e.valueFrom as { secretKeyRef?: { name: string; key: "username" | "password" } } | undefined)?.secretKeyRef;
        if (ref) {
            assert.equal(ref.name, roleSecretName(METRICS_ROLE.name));
            env[e.name as string] = secret[ref.key];
        } else {
            env[e.name as string] = e.value as string;
        }
    }
    return env;
}

describe(`postgres_exporter as the sidecar runs it (real PostgreSQL ${PG_MAJOR})`, { skip: HAS_EXPORTER ? false : `${EXPORTER} is not installed (apt-get install prometheus-postgres-exporter)` }, () => {
    let pg: PgServer;
    let exporter: ChildProcess | undefined;
    let scrape = "";

    before(async () => {
        // Archiving on (a stand-in command that always succeeds), so pg_stat_archiver has a row
        // with a last archived time, as on a platform with continuous archiving.
        pg = await startPg("exporter", { archive_mode: "on", archive_command: "/bin/true" });
        const init = await sourceInitDb(initDbEnv(pg));
        assert.equal(init.status, 0, init.stderr);
        const dir = makeTempDir("exporter-roles");
        const sql = path.join(dir, "roles.sql");
        fs.writeFileSync(sql, extraRolesSql([METRICS_ROLE]));
        const r = await run("bash", [RECONCILE], {
            env: { ...initDbEnv(pg), PGHOST: "127.0.0.1", PGUSER: "postgres", PGDATABASE: "postgres", ROLES_SQL: sql, WAIT_SECONDS: "20", [rolePasswordEnv(METRICS_ROLE.name)]: METRICS_PW },
        });
        assert.equal(r.status, 0, r.stderr);
        // Test fixture only: one archived segment, so the archiver's row has a last archived time.
        pg.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1); SELECT pg_switch_wal();");
        for (let i = 0; i < 50 && pg.psql("SELECT archived_count FROM pg_stat_archiver") === "0"; i++) await sleep(100);

        const port = await freePort();
        const args = EXPORTER_ARGS.map((a) => (a.startsWith("--web.listen-address=") ? `--web.listen-address=127.0.0.1:${port}` : a));
        exporter = spawn(EXPORTER, args, { detached: true, stdio: "ignore", env: { PATH: process.env.PATH, ...sidecarEnv(pg.port) } });
        for (let i = 0; i < 100; i++) {
            try {
                const res = await fetch(`http://127.0.0.1:${port}/metrics`);
                const text = await res.text();
                if (/^pg_up(\{[^}]*\})? 1$/m.test(text)) {
                    scrape = text;
                    break;
                }
            } catch { /* not listening yet */ }
            await sleep(100);
        }
    });

    after(async () => {
        if (exporter?.pid !== undefined) {
            try { process.kill(-exporter.pid, "SIGTERM"); } catch { /* gone */ }
            await new Promise((r) => (exporter!.exitCode !== null || exporter!.signalCode !== null ? r(undefined) : exporter!.once("exit", r)));
        }
        await pg?.stop();
        assertNoLeftovers();
    });

    it("connects as the metrics role over loopback with the sidecar's DATA_SOURCE_* settings (pg_up 1)", () => {
        assert.match(scrape, /^pg_up(\{[^}]*\})? 1$/m, "the exporter never reported pg_up 1");
    });

    it("exports every pg_* metric the alert rules and dashboards read", async () => {
        const exported = new Set([...scrape.matchAll(/^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/gm)].map((m) => m[1]));
        const used = (await usedMetricNames()).filter((n) => n.startsWith("pg_"));
        assert.ok(used.length >= 10, `only ${used.length} pg_* metrics found in rules and dashboards`);
        const missing = used.filter((n) => !exported.has(n));
        assert.deepEqual(missing, [], `not exported: ${missing.join(", ")}`);
    });

    it("reports what the rules compare against: max_connections, connections per state and database sizes", () => {
        assert.match(scrape, /^pg_settings_max_connections(\{[^}]*\})? 100$/m);
        assert.match(scrape, /^pg_stat_activity_count\{[^}]*datname="mlflow"[^}]*state="idle"[^}]*\} \d+$/m);
        assert.match(scrape, /^pg_database_size_bytes\{[^}]*datname="mlflow"[^}]*\} [0-9.e+]+$/m);
        assert.match(scrape, /^pg_stat_archiver_archived_count(\{[^}]*\})? [1-9]/m);
    });
});
