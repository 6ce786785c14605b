// backup.sh / restore.sh / verify.sh end to end: real PostgreSQL 15, moto S3,
// the scripts run as child processes with the CronJob's environment.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import {
  assertNoLeftovers, BACKUP_PW, freePort, initDbEnv, makeTempDir, MLFLOW_PW, PG_BIN, REPO, run,
  sourceInitDb, startMoto, startPg, type PgServer, type RunResult, type S3Server,
} from "./support/realpg";

const SCRIPTS = path.join(REPO, "components/backup/scripts");
const BUCKET = "pg-backups";
const PREFIX = "postgres";
const GOOD_RUN = "20261122T010203Z";

interface Manifest {
  run_id: string; started_at: string; finished_at: string; server_version: string;
  tools: Record<string, string>;
  globals: { key: string; size_bytes: number; sha256: string };
  databases: { name: string; owner: string; key: string; size_bytes: number; sha256: string;
    contents: { tables: Record<string, number>; large_objects: number } }[];
}

describe("backup.sh / restore.sh / verify.sh (real PostgreSQL 15 + moto S3)", () => {
  let pg: PgServer;
  let s3: S3Server;
  let shimDir: string;
  let goodLatest: Buffer;

  const backupEnv = (extra: NodeJS.ProcessEnv = {}) => ({
    ...pg.env("backup", BACKUP_PW, true), ...s3.awsEnv(),
    BACKUP_BUCKET: BUCKET, BACKUP_PREFIX: PREFIX, BACKUP_DATABASES: "mlflow", BACKUP_SSE: "AES256", ...extra,
  });
  const restoreEnv = (extra: NodeJS.ProcessEnv = {}) => ({
    ...pg.env("postgres", pg.superPassword, true), ...s3.awsEnv(),
    BACKUP_BUCKET: BUCKET, BACKUP_PREFIX: PREFIX, ...extra,
  });
  const script = (name: string, env: NodeJS.ProcessEnv) => run("bash", [path.join(SCRIPTS, name)], { env });

  /** count + content checksum per table, and large objects, as the superuser. */
  function fingerprint(db: string): string {
    const tables = pg.psql(`SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables
      WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`, { db }).split("\n").filter(Boolean);
    const parts = tables.map((t) => `${t} ${pg.psql(`SELECT count(*) || ' ' || md5(coalesce(string_agg(x::text, '' ORDER BY x::text), '')) FROM ${t} x`, { db })}`);
    parts.push(`lo ${pg.psql("SELECT string_agg(oid || ':' || md5(lo_get(oid)), ',' ORDER BY oid) FROM pg_largeobject_metadata", { db })}`);
    return parts.join("\n");
  }

  async function assertFailedCleanly(r: RunResult, runId: string, reason: RegExp, code = 1) {
    assert.equal(r.status, code, r.stderr);
    assert.match(r.lastLine, /backup FAILED: /);
    assert.match(r.lastLine, reason);
    assert.equal(r.stdout, "");
    assert.deepEqual(await s3.list(BUCKET, `${PREFIX}/runs/${runId}/`), [], "a failed run left final objects");
    assert.deepEqual(await s3.list(BUCKET, `${PREFIX}/.staging/${runId}/`), [], "a failed run left staging objects");
    assert.deepEqual(await s3.get(BUCKET, `${PREFIX}/latest.json`), goodLatest, "latest.json changed");
  }

  before(async () => {
    [pg, s3] = await Promise.all([startPg("bk"), startMoto()]);
    await s3.createBucket(BUCKET);
    const init = await sourceInitDb(initDbEnv(pg));
    assert.equal(init.status, 0, init.stderr);
    // Seed as the application role, like MLflow would.
    const mlEnv = pg.env("mlflow", MLFLOW_PW, true);
    const bench = spawnSync(path.join(PG_BIN, "pgbench"), ["-i", "-s", "1", "-q", "mlflow"], { env: mlEnv, encoding: "utf8" });
    assert.equal(bench.status, 0, bench.stderr);
    pg.psql(`
      CREATE SCHEMA "Odd Schema";
      CREATE TABLE "Odd Schema"."Mixed ""Case"" t" (id int PRIMARY KEY, note text);
      INSERT INTO "Odd Schema"."Mixed ""Case"" t" VALUES (1, 'x'), (2, NULL);
      CREATE TABLE params (id bigserial PRIMARY KEY, key text, value text, blob bytea, doc json, doc_b jsonb, at timestamptz);
      INSERT INTO params (key, value, blob, doc, doc_b, at) VALUES
        ('unicode', 'Grüße 🚀 日本語 ''quoted'' "dq" \\ back', '\\x00ff10', '{"a": [1, 2, {"b": null}]}', '{"z": "ü"}', now()),
        ('nulls', NULL, NULL, NULL, NULL, NULL),
        ('random', repeat('lorem ipsum ', 100), (SELECT string_agg(decode(md5(i::text), 'hex'), ''::bytea) FROM generate_series(1, 4000) i), '[]', '{}', '2020-01-01Z');
      SELECT lo_from_bytea(0, convert_to('large object ü', 'UTF8'));
      SELECT lo_from_bytea(0, (SELECT string_agg(decode(md5(i::text), 'hex'), ''::bytea) FROM generate_series(1, 2000) i));
    `, { db: "mlflow", user: "mlflow", password: MLFLOW_PW, tcp: true });
    // MLflow's basic-auth user store, in its own database.
    pg.psql(`
      CREATE TABLE users (id serial PRIMARY KEY, username varchar(255) UNIQUE, password_hash varchar(255), is_admin boolean);
      INSERT INTO users (username, password_hash, is_admin) VALUES ('admin', 'pbkdf2:sha256:x', true), ('alice', 'pbkdf2:sha256:y', false);
    `, { db: "mlflow_auth", user: "mlflow", password: MLFLOW_PW, tcp: true });
    // PATH shims for verify.sh: initdb/pg_ctl refuse root, so re-exec them as postgres.
    shimDir = makeTempDir("shims");
    for (const b of ["initdb", "pg_ctl"]) {
      fs.writeFileSync(path.join(shimDir, b), `#!/bin/bash\nexec runuser -u postgres -- ${path.join(PG_BIN, b)} "$@"\n`, { mode: 0o755 });
    }
  });

  after(async () => {
    await Promise.allSettled([pg?.stop(), s3?.stop()]);
    if (shimDir) fs.rmSync(shimDir, { recursive: true, force: true });
    assertNoLeftovers();
  });

  test("backup: dumps, manifest, latest.json, SSE everywhere, no staging leftovers", async () => {
    // Both MLflow databases, as the CronJob runs it: tracking store and basic-auth store.
    const r = await script("backup.sh", backupEnv({ BACKUP_RUN_ID: GOOD_RUN, BACKUP_DATABASES: "mlflow mlflow_auth" }));
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.lastLine, new RegExp(`backup OK run=${GOOD_RUN} `));
    assert.equal(r.stdout, "");
    for (const step of ["connect", "globals", "count", "dump", "manifest"]) assert.match(r.stderr, new RegExp(`^\\S+Z backup: step=${step} .*seconds=`, "m"));
    assert.match(r.stderr, /step=dump db=mlflow bytes=\d+ seconds=/);
    assert.match(r.stderr, /step=dump db=mlflow_auth bytes=\d+ seconds=/);
    assert.match(r.lastLine, / databases=2 /);

    const keys = await s3.list(BUCKET);
    const run = `${PREFIX}/runs/${GOOD_RUN}`;
    assert.deepEqual(keys, [`${PREFIX}/latest.json`, `${run}/globals.sql`, `${run}/manifest.json`, `${run}/mlflow.dump`, `${run}/mlflow_auth.dump`]);
    for (const k of keys) assert.equal((await s3.head(BUCKET, k)).get("x-amz-server-side-encryption"), "AES256", k);

    goodLatest = await s3.get(BUCKET, `${PREFIX}/latest.json`);
    const latest = JSON.parse(goodLatest.toString());
    assert.equal(latest.run_id, GOOD_RUN);
    assert.equal(latest.manifest_key, `${run}/manifest.json`);

    const m = JSON.parse((await s3.get(BUCKET, latest.manifest_key)).toString()) as Manifest;
    assert.equal(m.run_id, GOOD_RUN);
    for (const t of [m.started_at, m.finished_at]) assert.match(t, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.match(m.server_version, /^15\./);
    assert.match(m.tools.pg_dump!, /pg_dump \(PostgreSQL\) 15/);
    assert.match(m.tools.aws!, /aws-cli/);
    for (const obj of [m.globals, ...m.databases]) {
      const body = await s3.get(BUCKET, obj.key);
      assert.equal(body.length, obj.size_bytes, obj.key);
      assert.equal(createHash("sha256").update(body).digest("hex"), obj.sha256, obj.key);
    }
    assert.equal(m.databases.length, 2);
    const db = m.databases[0]!;
    assert.equal(db.name, "mlflow");
    assert.equal(db.owner, "mlflow");
    assert.equal(db.key, `${run}/mlflow.dump`);
    assert.deepEqual(db.contents, {
      tables: {
        '"Odd Schema"."Mixed ""Case"" t"': 2, "public.params": 3, "public.pgbench_accounts": 100000,
        "public.pgbench_branches": 1, "public.pgbench_history": 0, "public.pgbench_tellers": 10,
      },
      large_objects: 2,
    });
    const auth = m.databases[1]!;
    assert.deepEqual([auth.name, auth.owner, auth.key], ["mlflow_auth", "mlflow", `${run}/mlflow_auth.dump`]);
    assert.deepEqual(auth.contents, { tables: { "public.users": 2 }, large_objects: 0 });
    assert.match((await s3.get(BUCKET, m.globals.key)).toString(), /CREATE ROLE mlflow;/);
  });

  test("restore: into a fresh database, identical contents, owned by the mlflow role", async () => {
    const r = await script("restore.sh", restoreEnv({ RESTORE_TARGET_DATABASE: "mlflow_restored" }));
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.lastLine, new RegExp(`restore OK run=${GOOD_RUN} database=mlflow target=mlflow_restored tables=6 rows=100016`));
    assert.equal(fingerprint("mlflow_restored"), fingerprint("mlflow"));
    assert.equal(pg.psql("SELECT string_agg(DISTINCT tableowner, ',') FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')", { db: "mlflow_restored" }), "mlflow");
    assert.equal(pg.psql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'mlflow_restored'"), "mlflow");
    assert.equal(pg.psql("SELECT string_agg(DISTINCT pg_get_userbyid(lomowner), ',') FROM pg_largeobject_metadata", { db: "mlflow_restored" }), "mlflow");
    // Restoring again over the same database is clean (--clean --if-exists).
    const again = await script("restore.sh", restoreEnv({ RESTORE_TARGET_DATABASE: "mlflow_restored", RESTORE_RUN_ID: GOOD_RUN }));
    assert.equal(again.status, 0, again.stderr);
    assert.equal(fingerprint("mlflow_restored"), fingerprint("mlflow"));
  });

  test("verify: restores the latest run into a throwaway server and stops it", async () => {
    const dir = makeTempDir("verify");
    try {
      const r = await script("verify.sh", { ...restoreEnv(), PATH: `${shimDir}:${process.env.PATH}`, VERIFY_DATA_DIR: dir });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr, /restore OK run=\S+ database=mlflow target=mlflow tables=6 rows=100016/);
      assert.match(r.stderr, /restore OK run=\S+ database=mlflow_auth target=mlflow_auth tables=1 rows=2 /);
      assert.match(r.lastLine, new RegExp(`verify OK run=${GOOD_RUN} databases=2 \\(mlflow mlflow_auth\\) `));
      assert.equal(fs.existsSync(path.join(dir, "pgdata")), false, "throwaway data dir left behind");
      const procs = spawnSync("pgrep", ["-f", dir], { encoding: "utf8" }).stdout.trim();
      assert.equal(procs, "", "throwaway server still running");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  describe("faults: non-zero exit, clear last line, no manifest, latest.json untouched", { concurrency: true }, () => {
    test("missing and invalid configuration exit 2 naming the variable", async () => {
      let r = await script("backup.sh", backupEnv({ BACKUP_BUCKET: "" }));
      assert.equal(r.status, 2);
      assert.equal(r.lastLine.replace(/^\S+ /, ""), "backup: backup FAILED: missing required environment variable BACKUP_BUCKET");
      r = await script("backup.sh", backupEnv({ BACKUP_SSE: "none" }));
      assert.equal(r.status, 2);
      assert.match(r.lastLine, /backup FAILED: invalid BACKUP_SSE 'none'/);
      r = await script("backup.sh", backupEnv({ BACKUP_RUN_ID: "fault-nodb", BACKUP_DATABASES: "mlflow nosuchdb" }));
      await assertFailedCleanly(r, "fault-nodb", /invalid BACKUP_DATABASES: database 'nosuchdb' does not exist/, 2);
    });

    test("database unreachable", async () => {
      const r = await script("backup.sh", backupEnv({ BACKUP_RUN_ID: "fault-port", PGPORT: String(await freePort()) }));
      await assertFailedCleanly(r, "fault-port", /cannot connect to PostgreSQL at 127\.0\.0\.1:\d+ as backup: .*Connection refused/);
    });

    test("wrong password", async () => {
      const r = await script("backup.sh", backupEnv({ BACKUP_RUN_ID: "fault-pw", PGPASSWORD: "nope" }));
      await assertFailedCleanly(r, "fault-pw", /cannot connect to PostgreSQL.*password authentication failed for user "backup"/);
    });

    test("S3 unreachable", async () => {
      const r = await script("backup.sh", backupEnv({ BACKUP_RUN_ID: "fault-s3", AWS_ENDPOINT_URL: `http://127.0.0.1:${await freePort()}`, AWS_MAX_ATTEMPTS: "1" }));
      await assertFailedCleanly(r, "fault-s3", /S3 bucket pg-backups not reachable: .*Could not connect/);
    });

    test("bucket missing", async () => {
      const r = await script("backup.sh", backupEnv({ BACKUP_RUN_ID: "fault-bucket", BACKUP_BUCKET: "no-such-bucket" }));
      assert.equal(r.status, 1);
      assert.match(r.lastLine, /backup FAILED: S3 bucket no-such-bucket not reachable: .*404/);
      assert.deepEqual(await s3.get(BUCKET, `${PREFIX}/latest.json`), goodLatest);
    });

    test("pg_dump killed mid-stream (SIGKILL after 20 kB)", async () => {
      const dir = makeTempDir("fault-dump");
      fs.writeFileSync(path.join(dir, "pg_dump"), [
        "#!/bin/bash",
        `[[ "$1" == --version ]] && exec ${PG_BIN}/pg_dump "$@"`,
        `${PG_BIN}/pg_dump "$@" | head -c 20000`,
        "kill -9 $$", ""].join("\n"), { mode: 0o755 });
      try {
        const r = await script("backup.sh", backupEnv({ BACKUP_RUN_ID: "fault-dump", PATH: `${dir}:${process.env.PATH}` }));
        await assertFailedCleanly(r, "fault-dump", /stream of postgres\/\.staging\/fault-dump\/mlflow\.dump failed \(pg_dump=137 tee=0 aws-upload=0/);
        assert.match(r.stderr, /step=globals bytes=/, "should have failed after the globals, mid-dump");
      } finally { fs.rmSync(dir, { recursive: true, force: true }); }
    });

    test("upload fails mid-stream", async () => {
      const dir = makeTempDir("fault-up");
      const realAws = spawnSync("bash", ["-c", "command -v aws"], { encoding: "utf8" }).stdout.trim();
      fs.writeFileSync(path.join(dir, "aws"), [
        "#!/bin/bash",
        'if [[ "$1 $2 $3" == "s3 cp -" && "$4" == *.dump ]]; then',
        "  head -c 30000 >/dev/null; echo 'simulated: connection reset during upload' >&2; exit 1",
        "fi",
        `exec ${realAws} "$@"`, ""].join("\n"), { mode: 0o755 });
      try {
        const r = await script("backup.sh", backupEnv({ BACKUP_RUN_ID: "fault-up", PATH: `${dir}:${process.env.PATH}` }));
        await assertFailedCleanly(r, "fault-up", /stream of postgres\/\.staging\/fault-up\/mlflow\.dump failed \(pg_dump=\d+ tee=\d+ aws-upload=1 /);
      } finally { fs.rmSync(dir, { recursive: true, force: true }); }
    });

    test("S3 holds different bytes than were streamed: nothing is promoted", async () => {
      const dir = makeTempDir("fault-size");
      const realAws = spawnSync("bash", ["-c", "command -v aws"], { encoding: "utf8" }).stdout.trim();
      // The LIST that checks the staged objects reports every size with a leading 1.
      fs.writeFileSync(path.join(dir, "aws"), [
        "#!/bin/bash",
        'if [[ "$1 $2" == "s3api list-objects-v2" ]]; then',
        `  set -o pipefail; ${realAws} "$@" | sed -E 's/"n": ([0-9]+)/"n": 1\\1/'; exit`,
        "fi",
        `exec ${realAws} "$@"`, ""].join("\n"), { mode: 0o755 });
      try {
        const r = await script("backup.sh", backupEnv({ BACKUP_RUN_ID: "fault-size", PATH: `${dir}:${process.env.PATH}` }));
        await assertFailedCleanly(r, "fault-size", /staged objects differ from what was streamed: postgres\/\.staging\/fault-size\/globals\.sql has 1(\d+) bytes, expected \1 bytes; postgres\/\.staging\/fault-size\/mlflow\.dump has 1(\d+) bytes, expected \2 bytes$/);
      } finally { fs.rmSync(dir, { recursive: true, force: true }); }
    });
  });

  test("restore fails (exit 4) when restored row counts differ from the manifest", async () => {
    const m = JSON.parse((await s3.get(BUCKET, `${PREFIX}/runs/${GOOD_RUN}/manifest.json`)).toString()) as Manifest;
    m.databases[0]!.contents.tables["public.pgbench_branches"] = 2;
    await s3.put(BUCKET, `${PREFIX}/runs/tampered/manifest.json`, Buffer.from(JSON.stringify(m)));
    const r = await script("restore.sh", restoreEnv({ RESTORE_RUN_ID: "tampered", RESTORE_TARGET_DATABASE: "mlflow_tampered" }));
    assert.equal(r.status, 4, r.stderr);
    assert.match(r.lastLine, /restore FAILED: row count mismatch in mlflow_tampered: public\.pgbench_branches expected 2 got 1$/);
  });

  test("restore refuses a corrupted dump (sha256) and restores nothing", async () => {
    const key = `${PREFIX}/runs/${GOOD_RUN}/mlflow.dump`;
    const good = await s3.get(BUCKET, key);
    const bad = Buffer.from(good); // same size, one flipped byte: only the sha256 can tell
    bad[bad.length >> 1] ^= 0xff;
    await s3.put(BUCKET, key, bad);
    const r = await script("restore.sh", restoreEnv({ RESTORE_TARGET_DATABASE: "mlflow_corrupt" }));
    assert.equal(r.status, 3, r.stderr);
    assert.match(r.lastLine, /restore FAILED: integrity check failed for .*mlflow\.dump: sha256 [0-9a-f]{64} != manifest [0-9a-f]{64}; nothing restored/);
    assert.equal(pg.psql("SELECT count(*) FROM pg_database WHERE datname = 'mlflow_corrupt'"), "0");
    await s3.put(BUCKET, key, good.subarray(0, 100));
    const r2 = await script("restore.sh", restoreEnv({ RESTORE_TARGET_DATABASE: "mlflow_corrupt" }));
    assert.equal(r2.status, 3);
    assert.match(r2.lastLine, /restore FAILED: integrity check failed .*: size 100 != manifest \d+/);
  });
});
