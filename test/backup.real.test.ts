// backup.sh / restore.sh / verify.sh end to end: real PostgreSQL (15 in CI), moto S3,
// the scripts run as child processes with the CronJob's environment.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawn, spawnSync } from "node:child_process";
import {
  assertNoLeftovers, BACKUP_PW, freePort, initDbEnv, makeTempDir, MLFLOW_PW, PG_BIN, PG_MAJOR, REAL_AWS, REPO, run,
  sleep, sourceInitDb, startMoto, startPg, type PgServer, type RunResult, type S3Server,
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

describe(`backup.sh / restore.sh / verify.sh (real PostgreSQL ${PG_MAJOR} + moto S3)`, () => {
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
  /** A directory of executables put first on PATH (test doubles for pg_dump, aws, initdb). */
  function shims(tag: string, files: Record<string, string[]>): { dir: string; path: string } {
    const dir = makeTempDir(tag);
    for (const [name, lines] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), ["#!/bin/bash", ...lines, ""].join("\n"), { mode: 0o755 });
    return { dir, path: `${dir}:${process.env.PATH}` };
  }
  /** Debian's AWS CLI v2 (2.9), which ignores AWS_ENDPOINT_URL and has no conditional writes. */
  const awsV2 = () => shims("awsv2", { aws: ['exec /usr/bin/aws --endpoint-url "$AWS_ENDPOINT_URL" "$@"'] });
  /** Wait until a session of `user` holds an exported snapshot or waits for a lock in `db`. */
  async function waitForSession(db: string, what: "snapshot" | "lock", timeoutMs = 120_000) {
    const sql = what === "snapshot"
      ? `SELECT count(*) FROM pg_stat_activity WHERE datname = '${db}' AND state = 'idle in transaction' AND query LIKE '%pg_export_snapshot%'`
      : `SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE d.datname = '${db}' AND NOT l.granted`;
    for (const t0 = Date.now(); Date.now() - t0 < timeoutMs; await sleep(100)) if (pg.psql(sql) !== "0") return;
    throw new Error(`no ${what} session in ${db} after ${timeoutMs} ms`);
  }
  /** Owner, ACLs, connection limit, settings of a database, and of its schemas, relations and default privileges. */
  function hardening(db: string): string {
    const acl = (col: string) => `coalesce((SELECT string_agg(pg_get_userbyid(a.grantor) || '>' || CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END
      || ':' || a.privilege_type || CASE WHEN a.is_grantable THEN '*' ELSE '' END, ',' ORDER BY 1) FROM aclexplode(${col}) a), 'default')`;
    const top = pg.psql(`SELECT concat_ws(' ', pg_get_userbyid(datdba), datconnlimit, datallowconn, pg_encoding_to_char(encoding), datcollate, ${acl("datacl")},
        (SELECT string_agg(coalesce(pg_get_userbyid(nullif(setrole, 0)), '*') || ':' || array_to_string(setconfig, ';'), ' | ' ORDER BY 1) FROM pg_db_role_setting WHERE setdatabase = d.oid))
      FROM pg_database d WHERE datname = '${db}'`);
    const inside = pg.psql(`SELECT string_agg(x, E'\\n' ORDER BY x) FROM (
        SELECT concat_ws(' ', 'schema', nspname, pg_get_userbyid(nspowner), ${acl("nspacl")}) AS x FROM pg_namespace WHERE nspname !~ '^pg_' AND nspname <> 'information_schema'
        UNION ALL SELECT concat_ws(' ', 'rel', relnamespace::regnamespace, relname, relkind, pg_get_userbyid(relowner), ${acl("relacl")}) FROM pg_class
          WHERE relnamespace::regnamespace::text NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND relkind IN ('r', 'p', 'S', 'v', 'm')
        UNION ALL SELECT concat_ws(' ', 'default', pg_get_userbyid(defaclrole), defaclobjtype, ${acl("defaclacl")}) FROM pg_default_acl) s`, { db });
    return `${top}\n${inside}`;
  }
  /** A README runbook block (```sql after its marker comment), run with psql variables. */
  function runbook(name: string, vars: Record<string, string>) {
    const readme = fs.readFileSync(path.join(REPO, "README.md"), "utf8");
    const m = new RegExp(`<!-- runbook: ${name} [^>]*-->\\s*\`\`\`sql\\n([\\s\\S]*?)\`\`\``).exec(readme);
    assert.ok(m, `README has no runbook block ${name}`);
    return pg.psql(m[1]!, { vars });
  }
  /** Hold an ACCESS EXCLUSIVE lock on `table` in `db` (superuser session) until release() is called. */
  async function holdLock(db: string, table: string) {
    const child = spawn("psql", ["-X", "-q", "-d", db], { env: pg.env("postgres"), stdio: ["pipe", "ignore", "ignore"] });
    child.stdin.write(`BEGIN; LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600);\n`);
    const sql = `SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation JOIN pg_database d ON d.oid = l.database
      WHERE d.datname = '${db}' AND c.relname = '${table}' AND l.mode = 'AccessExclusiveLock' AND l.granted`;
    for (let i = 0; pg.psql(sql, { db }) === "0"; i++) { if (i > 100) throw new Error("lock not taken"); await sleep(100); }
    return {
      async release() {
        const gone = new Promise((r) => child.once("exit", r));
        child.kill("SIGKILL");
        pg.psql(`SELECT pg_terminate_backend(pid) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = '${table}' AND l.mode = 'AccessExclusiveLock'`, { db });
        await gone;
      },
    };
  }

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
    assert.deepEqual(await s3.list(BUCKET, `${PREFIX}/runs/${runId}/`), [], "a failed run left objects (and never a manifest)");
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
    for (const step of ["connect", "globals", "dump", "check", "manifest", "latest"]) assert.match(r.stderr, new RegExp(`^\\S+Z backup: step=${step} .*seconds=`, "m"));
    assert.match(r.stderr, /step=dump db=mlflow bytes=\d+ .*seconds=/);
    assert.match(r.stderr, /step=dump db=mlflow_auth bytes=\d+ .*seconds=/);
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
    assert.match(m.server_version, new RegExp(`^${PG_MAJOR}\\.`));
    assert.match(m.tools.pg_dump!, new RegExp(`pg_dump \\(PostgreSQL\\) ${PG_MAJOR}`));
    assert.match(m.tools.aws!, /aws-cli/);
    // For real: zstd from pg_dump 16 on, and before that gzip at level 1.
    const compression = PG_MAJOR >= 16 ? "zstd:3" : "gzip:1";
    assert.equal((m as unknown as { compression: string }).compression, compression);
    assert.match(r.stderr, new RegExp(`step=connect .*pg_dump=${PG_MAJOR} compression=${compression} `));
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

  // Everything below reads the first run or writes under its own prefix or database: all at once.
  describe("after a first good backup", { concurrency: true }, () => {
    test("restore: into a fresh database, identical contents, owned by the mlflow role", async () => {
      const r = await script("restore.sh", restoreEnv({ RESTORE_TARGET_DATABASE: "mlflow_restored" }));
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.lastLine, new RegExp(`restore OK run=${GOOD_RUN} database=mlflow target=mlflow_restored tables=6 rows=100016`));
      assert.equal(fingerprint("mlflow_restored"), fingerprint("mlflow"));
      assert.equal(pg.psql("SELECT string_agg(DISTINCT tableowner, ',') FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')", { db: "mlflow_restored" }), "mlflow");
      assert.equal(pg.psql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'mlflow_restored'"), "mlflow");
      assert.equal(pg.psql("SELECT string_agg(DISTINCT pg_get_userbyid(lomowner), ',') FROM pg_largeobject_metadata", { db: "mlflow_restored" }), "mlflow");
      assert.equal(pg.psql("SELECT count(*) FROM pg_database WHERE datname LIKE 'mlflow_restored_%'"), "0", "no copy or previous database for a new target");
      // Restoring again over the same database swaps a fresh copy in and keeps the previous one.
      const again = await script("restore.sh", restoreEnv({ RESTORE_TARGET_DATABASE: "mlflow_restored", RESTORE_RUN_ID: GOOD_RUN }));
      assert.equal(again.status, 0, again.stderr);
      assert.match(again.lastLine, new RegExp(`previous=mlflow_restored_before_${GOOD_RUN} `));
      assert.equal(fingerprint("mlflow_restored"), fingerprint("mlflow"));
      // A third restore of the same run would overwrite that rollback copy: refused.
      const third = await script("restore.sh", restoreEnv({ RESTORE_TARGET_DATABASE: "mlflow_restored", RESTORE_RUN_ID: GOOD_RUN }));
      assert.equal(third.status, 2, third.stderr);
      assert.match(third.lastLine, new RegExp(`restore FAILED: database mlflow_restored_before_${GOOD_RUN} already exists \\(an earlier restore of run ${GOOD_RUN} into mlflow_restored\\): roll it back or drop it first`));
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

    test("restore replaces by swap: later objects gone, same hardening, MLflow's sessions closed, foreign locks waited for, rollback", async () => {
      // A database set up by init-db.sh exactly like MLflow's, with grants, default privileges and settings.
      const init = await sourceInitDb(initDbEnv(pg, { MLFLOW_DB_NAME: "tracking", MLFLOW_AUTH_DB_NAME: "tracking_auth" }));
      assert.equal(init.status, 0, init.stderr);
      const asMlflow = { db: "tracking", user: "mlflow", password: MLFLOW_PW, tcp: true };
      pg.psql(`CREATE TABLE experiments (id bigserial PRIMARY KEY, name text); INSERT INTO experiments (name) SELECT 'e' || i FROM generate_series(1, 50) i;
        GRANT SELECT ON experiments TO backup; ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO backup;`, asMlflow);
      pg.psql(`ALTER DATABASE tracking SET work_mem = '8MB'; ALTER DATABASE tracking CONNECTION LIMIT 50; ALTER ROLE mlflow IN DATABASE tracking SET search_path = public, "$user";`);
      const b = await script("backup.sh", backupEnv({ BACKUP_PREFIX: "swap", BACKUP_RUN_ID: "swap1", BACKUP_DATABASES: "tracking" }));
      assert.equal(b.status, 0, b.stderr);
      const env = restoreEnv({ BACKUP_PREFIX: "swap", RESTORE_DATABASE: "tracking" });

      // Someone else (a superuser's migration) holds a lock in the target: the restore waits lock_timeout, names it, changes nothing.
      pg.psql("CREATE DATABASE tracking_busy OWNER mlflow");
      pg.psql("CREATE TABLE held (id int); INSERT INTO held VALUES (42);", { ...asMlflow, db: "tracking_busy" });
      const lock = await holdLock("tracking_busy", "held");
      try {
        const t0 = Date.now();
        const busy = await script("restore.sh", { ...env, RESTORE_TARGET_DATABASE: "tracking_busy", BACKUP_LOCK_TIMEOUT: "1s" });
        assert.ok(Date.now() - t0 < 300_000, `took ${Date.now() - t0} ms (the lock is held for 10 minutes)`);
        assert.equal(busy.status, 1, busy.stderr);
        assert.match(busy.stderr, /waiting up to 1s \(lock_timeout\) for others/);
        assert.match(busy.lastLine, /restore FAILED: tracking_busy is still in use by pid \d+ \(user postgres, psql\) after 1s \(lock_timeout\); locks: AccessExclusiveLock on held held by pid \d+ \(user postgres, transaction open since [\d:]+Z\); nothing swapped, tracking_busy open again, restored copy dropped$/);
      } finally { await lock.release(); }
      assert.equal(pg.psql("SELECT id FROM held", { ...asMlflow, db: "tracking_busy" }), "42");
      assert.equal(pg.psql("SELECT string_agg(datname || ':' || datallowconn, ',') FROM pg_database WHERE datname LIKE 'tracking_busy%'"), "tracking_busy:true");

      // After the backup: a new table and sequence, and MLflow connected.
      const before = hardening("tracking");
      pg.psql("CREATE TABLE later (id int); CREATE SEQUENCE later_seq;", asMlflow);
      const withLater = hardening("tracking");
      const mlflowSession = spawn("psql", ["-X", "-q", "-d", "tracking"], { env: pg.env("mlflow", MLFLOW_PW, true), stdio: ["pipe", "ignore", "ignore"] });
      const sessionEnded = new Promise((r) => mlflowSession.once("exit", r));
      mlflowSession.stdin.write("SELECT pg_sleep(600);\n");
      for (let i = 0; pg.psql("SELECT count(*) FROM pg_stat_activity WHERE datname = 'tracking' AND usename = 'mlflow'") === "0"; i++) { assert.ok(i < 600); await sleep(100); }

      const r = await script("restore.sh", { ...env, RESTORE_TARGET_DATABASE: "tracking" });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.lastLine, /restore OK run=swap1 database=tracking target=tracking tables=1 rows=50 bytes=\d+ previous=tracking_before_swap1 /);
      await sessionEnded; // terminated by the swap
      const rels = (db: string) => pg.psql("SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'S')", { db });
      assert.equal(rels("tracking"), "experiments,experiments_id_seq", "objects created after the backup survived the restore");
      assert.equal(hardening("tracking"), before, "the restored database differs in owner, grants or settings");
      assert.equal(pg.psql("SELECT datallowconn FROM pg_database WHERE datname = 'tracking_before_swap1'"), "f");
      assert.equal(pg.psql("SELECT count(*) FROM experiments", asMlflow), "50", "MLflow connects to the new database");

      // The README's rollback brings the previous database back, the drop removes the rejected one.
      runbook("restore-rollback", { db: "tracking", run: "swap1" });
      assert.equal(rels("tracking"), "experiments,experiments_id_seq,later,later_seq");
      assert.equal(hardening("tracking"), withLater);
      assert.equal(pg.psql("SELECT datallowconn FROM pg_database WHERE datname = 'tracking_failed_swap1'"), "f");
      pg.psql('DROP DATABASE "tracking_failed_swap1"');
      // Restored again, confirmed good: the README's drop removes the previous database.
      const again = await script("restore.sh", { ...env, RESTORE_TARGET_DATABASE: "tracking" });
      assert.equal(again.status, 0, again.stderr);
      runbook("restore-drop", { db: "tracking", run: "swap1" });
      assert.equal(pg.psql("SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database WHERE datname LIKE 'tracking%'"), "tracking,tracking_auth,tracking_busy");
    });

    test("compression: zstd for pg_dump >= 16 (the deployed 17, by a version stub), gzip level 1 before", async () => {
      const decide = spawnSync("bash", ["-c", `_BACKUP_WORKER=1; . "${SCRIPTS}/lib.sh"; for v in 13 15 16 17 18; do printf '%s=%s/%s ' $v "$(dump_compression $v)" "$(compression_name "$(dump_compression $v)")"; done`], { encoding: "utf8" });
      assert.equal(decide.stderr.trim(), "13=1/gzip:1 15=1/gzip:1 16=zstd:3/zstd:3 17=zstd:3/zstd:3 18=zstd:3/zstd:3");
      // pg_dump claiming 17: backup.sh must pass --compress=zstd:3 (this machine's pg_dump 15 then writes it uncompressed).
      const seen = path.join(makeTempDir("zstd-args"), "args");
      const stub = shims("pg17", { pg_dump: [
        `[[ "$1" == --version ]] && { echo 'pg_dump (PostgreSQL) 17.6'; exit 0; }`,
        `printf '%s\\n' "$@" >${seen}`,
        `args=(); for a in "$@"; do [[ "$a" == --compress=zstd:* ]] && a=--compress=0; args+=("$a"); done`,
        `exec ${PG_BIN}/pg_dump "\${args[@]}"`] });
      try {
        const r = await script("backup.sh", backupEnv({ BACKUP_PREFIX: "zstd", BACKUP_DATABASES: "mlflow_auth", PATH: stub.path }));
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stderr, /pg_dump=17 compression=zstd:3 /);
        assert.ok(fs.readFileSync(seen, "utf8").split("\n").includes("--compress=zstd:3"));
        const latest = JSON.parse((await s3.get(BUCKET, "zstd/latest.json")).toString());
        const m = JSON.parse((await s3.get(BUCKET, latest.manifest_key)).toString());
        assert.equal(m.compression, "zstd:3");
        assert.equal(m.tools.pg_dump, "pg_dump (PostgreSQL) 17.6");
      } finally { fs.rmSync(stub.dir, { recursive: true, force: true }); fs.rmSync(path.dirname(seen), { recursive: true, force: true }); }
    });

    describe("runs: unique ids, never overwritten, latest.json only forward", { concurrency: true }, () => {
      test("a run id that is taken is refused: the existing run and latest.json stay as they were", async () => {
        const keys = await s3.list(BUCKET, `${PREFIX}/runs/${GOOD_RUN}/`);
        const bodies = await Promise.all(keys.map((k) => s3.get(BUCKET, k)));
        const r = await script("backup.sh", backupEnv({ BACKUP_RUN_ID: GOOD_RUN }));
        assert.equal(r.status, 1, r.stderr);
        assert.match(r.lastLine, new RegExp(`backup FAILED: run ${GOOD_RUN} already exists \\(s3://pg-backups/postgres/runs/${GOOD_RUN}/ is taken\\); refusing to write into it$`));
        assert.deepEqual(await s3.list(BUCKET, `${PREFIX}/runs/${GOOD_RUN}/`), keys);
        for (const [i, k] of keys.entries()) assert.deepEqual(await s3.get(BUCKET, k), bodies[i], k);
        assert.deepEqual(await s3.get(BUCKET, `${PREFIX}/latest.json`), goodLatest);
      });

      test("overlapping runs: the older snapshot finishing last leaves latest.json on the newer one", async () => {
        // Run A's pg_dump waits (after A took its snapshot) until B, started after that snapshot, has finished.
        const flag = path.join(makeTempDir("overlap-flag"), "b-done");
        const slow = shims("slow-dump", { pg_dump: [
          `[[ "$1" == --version ]] || for _ in $(seq 600); do [[ -e ${flag} ]] && break; sleep 0.1; done`,
          `exec ${PG_BIN}/pg_dump "$@"`] });
        try {
          pg.psql("CREATE DATABASE overlap OWNER mlflow; GRANT CONNECT ON DATABASE overlap TO backup;");
          const env = { BACKUP_PREFIX: "overlap", BACKUP_DATABASES: "overlap" };
          const a = script("backup.sh", backupEnv({ ...env, BACKUP_RUN_ID: "run-a", PATH: slow.path }));
          await waitForSession("overlap", "snapshot");
          const b = await script("backup.sh", backupEnv({ ...env, BACKUP_RUN_ID: "run-b" }));
          assert.equal(b.status, 0, b.stderr);
          assert.equal(JSON.parse((await s3.get(BUCKET, "overlap/latest.json")).toString()).run_id, "run-b");
          fs.writeFileSync(flag, "");
          const ra = await a;
          assert.equal(ra.status, 0, ra.stderr);
          assert.match(ra.stderr, /step=latest latest\.json kept on run run-b \(snapshot \S+\): not older than this run/);
          const latest = JSON.parse((await s3.get(BUCKET, "overlap/latest.json")).toString());
          assert.equal(latest.run_id, "run-b", "latest.json went backwards");
          const [ma, mb] = await Promise.all(["run-a", "run-b"].map(async (id) => JSON.parse((await s3.get(BUCKET, `overlap/runs/${id}/manifest.json`)).toString())));
          assert.ok(ma.snapshot_at < mb.snapshot_at, `${ma.snapshot_at} < ${mb.snapshot_at}`);
          assert.equal(latest.snapshot_at, mb.snapshot_at);
          assert.ok(ma.finished_at >= mb.finished_at, "A finished last");
        } finally { fs.rmSync(slow.dir, { recursive: true, force: true }); fs.rmSync(path.dirname(flag), { recursive: true, force: true }); }
      });

      test("a database name with = and quotes reaches every client intact", async () => {
        const odd = `odd=db'name"x"`;
        const conn = `dbname='odd=db\\'name"x"'`;
        pg.psql(`CREATE DATABASE "odd=db'name""x""" OWNER mlflow; GRANT CONNECT ON DATABASE "odd=db'name""x""" TO backup;`);
        pg.psql("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 7);", { db: conn, user: "mlflow", password: MLFLOW_PW, tcp: true });
        const b = await script("backup.sh", backupEnv({ BACKUP_PREFIX: "odd", BACKUP_DATABASES: odd }));
        assert.equal(b.status, 0, b.stderr);
        const r = await script("restore.sh", restoreEnv({ BACKUP_PREFIX: "odd", RESTORE_DATABASE: odd, RESTORE_TARGET_DATABASE: `${odd}_copy` }));
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.lastLine, /tables=1 rows=7 /);
        assert.equal(pg.psql("SELECT count(*) FROM t", { db: `dbname='odd=db\\'name"x"_copy'` }), "7");
      });
    });

    describe("Object Lock: a bucket with default retention, as in prod", { concurrency: true }, () => {
      const LOCKED = "pg-backups-locked";
      before(() => s3.createBucket(LOCKED, { objectLockDays: 1 }));
      for (const cli of ["v1", "v2"] as const) {
        test(`backup, failed-run cleanup and restore work with AWS CLI ${cli}`, async () => {
          const v2 = cli === "v2" ? awsV2() : undefined;
          const env = { BACKUP_BUCKET: LOCKED, BACKUP_PREFIX: cli, ...(v2 ? { PATH: v2.path } : {}) };
          try {
            // With v1: two runs started together (default ids) both publish, under different ids.
            const runs = await Promise.all((cli === "v1" ? [1, 2] : [1]).map(() => script("backup.sh", backupEnv({ ...env, BACKUP_DATABASES: "mlflow_auth" }))));
            for (const x of runs) assert.equal(x.status, 0, x.stderr);
            const r = runs[0]!;
            const ids = runs.map((x) => /backup OK run=(\S+) /.exec(x.lastLine)![1]!);
            for (const id of ids) assert.match(id, /^\d{8}T\d{6}Z-[0-9a-f]{8}$/);
            assert.equal(new Set(ids).size, ids.length, "run ids collided");
            const manifests = await Promise.all(ids.map(async (id) => JSON.parse((await s3.get(LOCKED, `${cli}/runs/${id}/manifest.json`)).toString())));
            const newest = manifests.reduce((x, y) => (x.snapshot_at >= y.snapshot_at ? x : y));
            const latest = JSON.parse((await s3.get(LOCKED, `${cli}/latest.json`)).toString());
            assert.equal(latest.run_id, newest.run_id);
            const head = await s3.head(LOCKED, latest.manifest_key);
            assert.equal(head.get("x-amz-object-lock-mode"), "GOVERNANCE");
            const dumpFail = shims(`lockfail-${cli}`, { pg_dump: [`[[ "$1" == --version ]] && exec ${PG_BIN}/pg_dump "$@"`, "echo 'simulated failure' >&2; exit 1"] });
            try {
              const f = await script("backup.sh", backupEnv({ ...env, BACKUP_RUN_ID: "fails", BACKUP_DATABASES: "mlflow_auth", PATH: `${dumpFail.dir}:${env.PATH ?? process.env.PATH}` }));
              assert.equal(f.status, 1, f.stderr);
              assert.match(f.lastLine, /stream of \S+ failed \(pg_dump=1 .*simulated failure/);
              assert.deepEqual(await s3.list(LOCKED, `${cli}/runs/fails/`), [], "failed run's objects (delete markers over locked versions)");
            } finally { fs.rmSync(dumpFail.dir, { recursive: true, force: true }); }
            const rs = await script("restore.sh", restoreEnv({ ...env, RESTORE_DATABASE: "mlflow_auth", RESTORE_TARGET_DATABASE: `mlflow_auth_locked_${cli}` }));
            assert.equal(rs.status, 0, rs.stderr);
            assert.match(rs.lastLine, /tables=1 rows=2 /);
            if (v2) assert.match(r.stderr, /WARNING: this AWS CLI has no conditional writes/);
          } finally { if (v2) fs.rmSync(v2.dir, { recursive: true, force: true }); }
        });
      }
    });

    describe("locks and signals: nothing hangs silently", { concurrency: true }, () => {
      before(() => {
        for (const db of ["locky1", "locky2"]) {
          pg.psql(`CREATE DATABASE ${db} OWNER mlflow; GRANT CONNECT ON DATABASE ${db} TO backup;`);
          pg.psql("CREATE TABLE experiments (id int); INSERT INTO experiments VALUES (1);", { db, user: "mlflow", password: MLFLOW_PW, tcp: true });
        }
      });

      test("backup against a table under an exclusive lock fails within lock_timeout, naming the lock", async () => {
        const lock = await holdLock("locky1", "experiments");
        try {
          const t0 = Date.now();
          const r = await script("backup.sh", backupEnv({ BACKUP_PREFIX: "locky", BACKUP_RUN_ID: "locked", BACKUP_DATABASES: "locky1", BACKUP_LOCK_TIMEOUT: "1s" }));
          // The lock is held for 10 minutes: only lock_timeout can end the run sooner (generous bound: shared, loaded CI machine).
          assert.ok(Date.now() - t0 < 300_000, `took ${Date.now() - t0} ms`);
          assert.equal(r.status, 1, r.stderr);
          assert.match(r.stderr, /step=snapshot db=locky1 .*table locks wait at most 1s/);
          assert.match(r.lastLine, /backup FAILED: .*waited 1s \(lock_timeout\) for a table lock: AccessExclusiveLock on experiments held by pid \d+ \(user postgres\)/);
          assert.deepEqual(await s3.list(BUCKET, "locky/runs/locked/"), []);
        } finally { await lock.release(); }
      });

      test("a TERM that also ends the worker's subshells leaves one status line, FAILED, never OK", async () => {
        // Subshells inherit the worker's EXIT trap and ran it when the supervisor's TERM reached
        // them: a killed run logged "backup OK" lines (seen under load). lib.sh is shared by
        // backup.sh, restore.sh and verify.sh; this worker has such a subshell when the TERM comes.
        const dir = makeTempDir("lib-term");
        const file = path.join(dir, "job.sh");
        fs.writeFileSync(file, [
          "#!/usr/bin/env bash", "set -Eeuo pipefail", `. ${JSON.stringify(path.join(SCRIPTS, "lib.sh"))}`,
          "cleanup() { :; }", "install_traps", 'log "started"',
          "x=$(sleep 60) &", "sleep 60", ""].join("\n"));
        try {
          const child = spawn("bash", [file], { stdio: ["ignore", "pipe", "pipe"] });
          let stderr = "";
          child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
          const exited = new Promise<number | null>((r) => child.once("close", (code) => r(code)));
          for (let i = 0; i < 200 && !stderr.includes("started"); i++) await sleep(50);
          await sleep(300); // the subshell is up
          child.kill("SIGTERM");
          assert.equal(await exited, 143, stderr);
          const status = stderr.split("\n").filter((l) => / job (OK|FAILED)/.test(l));
          assert.deepEqual(status.map((l) => l.replace(/^\S+ /, "")), ["job: job FAILED: terminated by SIGTERM"], stderr);
        } finally { fs.rmSync(dir, { recursive: true, force: true }); }
      });

      test("SIGTERM while pg_dump waits for a lock: FAILED: terminated within seconds, children killed, objects deleted", async () => {
        const lock = await holdLock("locky2", "experiments");
        try {
          const child = spawn("bash", [path.join(SCRIPTS, "backup.sh")], { env: backupEnv({ BACKUP_PREFIX: "locky", BACKUP_RUN_ID: "termed", BACKUP_DATABASES: "locky2" }), stdio: ["ignore", "pipe", "pipe"] });
          let stderr = "";
          child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
          const exited = new Promise<number | null>((r) => child.once("close", (code) => r(code)));
          await waitForSession("locky2", "lock");          // count(*) and pg_dump queue behind the lock (lock_timeout 1min)
          const t0 = Date.now();
          child.kill("SIGTERM");
          const code = await exited;
          const secs = (Date.now() - t0) / 1000;
          assert.ok(secs < 10, `took ${secs} s`);
          assert.equal(code, 143, stderr);
          const last = stderr.trimEnd().split("\n").pop()!;
          // On a loaded machine the clean-up (one S3 call) may outlast the grace period: then the
          // supervisor kills it and says so; the objects are left to the lifecycle rule.
          assert.match(last, /backup FAILED: terminated by SIGTERM( \(cleanup did not finish within 5s; killed\))?$/, stderr);
          const cleanedUp = !last.endsWith("killed)");
          assert.match(stderr, /received SIGTERM: stopping the run and its child processes/);
          assert.equal(spawnSync("pgrep", ["-f", "dbname='locky2'"], { encoding: "utf8" }).stdout.trim(), "", "pg_dump/psql still running");
          // Their server sessions notice the dead client (client_connection_check_interval) and leave the lock queue.
          let sessions = "";
          for (let i = 0; i < 60 && (sessions = pg.psql("SELECT count(*) FROM pg_stat_activity WHERE datname = 'locky2' AND usename = 'backup'")) !== "0"; i++) await sleep(100);
          assert.equal(sessions, "0", "the backup's server sessions still wait for the lock");
          if (cleanedUp) assert.deepEqual(await s3.list(BUCKET, "locky/runs/termed/"), []);
        } finally { await lock.release(); }
      });
    });

    describe("faults: non-zero exit, clear last line, no manifest, latest.json untouched", { concurrency: true }, () => {
      test("missing and invalid configuration exit 2 naming the variable", async () => {
        let r = await script("backup.sh", backupEnv({ BACKUP_BUCKET: "" }));
        assert.equal(r.status, 2);
        assert.equal(r.lastLine.replace(/^\S+ /, ""), "backup: backup FAILED: missing required environment variable BACKUP_BUCKET");
        r = await script("backup.sh", backupEnv({ BACKUP_SSE: "none" }));
        assert.equal(r.status, 2);
        assert.match(r.lastLine, /backup FAILED: invalid BACKUP_SSE 'none'/);
        for (const id of [".", "..", "a/b", "x".repeat(65)]) {
          r = await script("backup.sh", backupEnv({ BACKUP_RUN_ID: id }));
          assert.equal(r.status, 2, id);
          assert.match(r.lastLine, /backup FAILED: invalid BACKUP_RUN_ID/, id);
        }
        r = await script("backup.sh", backupEnv({ BACKUP_LOCK_TIMEOUT: "soon" }));
        assert.equal(r.status, 2);
        assert.match(r.lastLine, /backup FAILED: invalid BACKUP_LOCK_TIMEOUT 'soon' \(a PostgreSQL duration/);
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
        assert.match(r.lastLine, /backup FAILED: S3 bucket no-such-bucket not reachable: .*NoSuchBucket/);
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
          await assertFailedCleanly(r, "fault-dump", /stream of postgres\/runs\/fault-dump\/mlflow\.dump failed \(pg_dump=137 tee=0 aws-upload=0/);
          assert.match(r.stderr, /step=globals bytes=/, "should have failed after the globals, mid-dump");
        } finally { fs.rmSync(dir, { recursive: true, force: true }); }
      });

      test("upload fails mid-stream", async () => {
        const dir = makeTempDir("fault-up");
        fs.writeFileSync(path.join(dir, "aws"), [
          "#!/bin/bash",
          'if [[ "$1 $2 $3" == "s3 cp -" && "$4" == *.dump ]]; then',
          "  head -c 30000 >/dev/null; echo 'simulated: connection reset during upload' >&2; exit 1",
          "fi",
          `exec ${REAL_AWS} "$@"`, ""].join("\n"), { mode: 0o755 });
        try {
          const r = await script("backup.sh", backupEnv({ BACKUP_RUN_ID: "fault-up", PATH: `${dir}:${process.env.PATH}` }));
          await assertFailedCleanly(r, "fault-up", /stream of postgres\/runs\/fault-up\/mlflow\.dump failed \(pg_dump=\d+ tee=\d+ aws-upload=1 /);
        } finally { fs.rmSync(dir, { recursive: true, force: true }); }
      });

      test("a failed check leaves no S3 request running (the latest.json read beside it is stopped)", async () => {
        const tag = `slow-latest-${process.pid}`;
        const fake = shims("fault-list", { aws: [
          `[[ "$1 $2" == "s3api get-object" && " $* " == *" postgres/latest.json "* ]] && exec -a ${tag} sleep 45`,
          'if [[ "$1 $2" == "s3api list-objects-v2" ]]; then echo "simulated: LIST refused" >&2; exit 1; fi',
          `exec ${REAL_AWS} "$@"`] });
        try {
          const r = await script("backup.sh", backupEnv({ BACKUP_RUN_ID: "fault-list", PATH: fake.path }));
          await assertFailedCleanly(r, "fault-list", /cannot list the run's objects under postgres\/runs\/fault-list\/: simulated: LIST refused$/);
          assert.equal(spawnSync("pgrep", ["-f", tag], { encoding: "utf8" }).stdout.trim(), "", "the latest.json read outlived the run");
        } finally {
          spawnSync("pkill", ["-f", tag]);
          fs.rmSync(fake.dir, { recursive: true, force: true });
        }
      });

      test("S3 holds different bytes than were streamed: no manifest, the run's objects are deleted", async () => {
        const dir = makeTempDir("fault-size");
        // The LIST that checks the run's objects reports every size with a leading 1.
        fs.writeFileSync(path.join(dir, "aws"), [
          "#!/bin/bash",
          'if [[ "$1 $2" == "s3api list-objects-v2" ]]; then',
          `  set -o pipefail; ${REAL_AWS} "$@" | sed -E 's/"n": ([0-9]+)/"n": 1\\1/'; exit`,
          "fi",
          `exec ${REAL_AWS} "$@"`, ""].join("\n"), { mode: 0o755 });
        try {
          const r = await script("backup.sh", backupEnv({ BACKUP_RUN_ID: "fault-size", PATH: `${dir}:${process.env.PATH}` }));
          await assertFailedCleanly(r, "fault-size", /objects in S3 differ from what was streamed: postgres\/runs\/fault-size\/globals\.sql has 1(\d+) bytes, expected \1 bytes; postgres\/runs\/fault-size\/mlflow\.dump has 1(\d+) bytes, expected \2 bytes$/);
        } finally { fs.rmSync(dir, { recursive: true, force: true }); }
      });
    });

    describe("readers never trust a run without a manifest; reasons survive", { concurrency: true }, () => {
      test("restore of a run whose manifest is missing says so", async () => {
        await s3.put(BUCKET, `${PREFIX}/runs/no-manifest/mlflow.dump`, await s3.get(BUCKET, `${PREFIX}/runs/${GOOD_RUN}/mlflow.dump`));
        const r = await script("restore.sh", restoreEnv({ RESTORE_RUN_ID: "no-manifest", RESTORE_TARGET_DATABASE: "mlflow_nm" }));
        assert.equal(r.status, 1, r.stderr);
        assert.match(r.lastLine, /restore FAILED: backup run no-manifest has no manifest: it never completed, or it was deleted \(s3:\/\/pg-backups\/postgres\/runs\/no-manifest\/manifest\.json does not exist\)$/);
        assert.equal(pg.psql("SELECT count(*) FROM pg_database WHERE datname = 'mlflow_nm'"), "0");
      });

      test("restore and verify without latest.json say so", async () => {
        const r = await script("restore.sh", restoreEnv({ BACKUP_PREFIX: "never-backed-up" }));
        assert.equal(r.status, 1, r.stderr);
        assert.match(r.lastLine, /restore FAILED: no latest\.json: no backup run has completed in this bucket and prefix yet \(s3:\/\/pg-backups\/never-backed-up\/latest\.json does not exist\)$/);
        const dir = makeTempDir("verify-nolatest");
        try {
          const v = await script("verify.sh", { ...restoreEnv({ BACKUP_PREFIX: "never-backed-up" }), PATH: `${shimDir}:${process.env.PATH}`, VERIFY_DATA_DIR: dir });
          assert.equal(v.status, 1, v.stderr);
          assert.match(v.lastLine, /verify FAILED: no latest\.json: no backup run has completed/);
        } finally { fs.rmSync(dir, { recursive: true, force: true }); }
      });

      test("verify shows the cause line when initdb fails", async () => {
        // What initdb prints when the scratch volume is full: the cause, then its own clean-up lines.
        const full = shims("initdb-full", { initdb: [
          "echo 'creating subdirectories ... ok'",
          "echo 'running bootstrap script ... 2026-11-24 01:00:00.000 UTC [42] FATAL:  could not extend file \"base/1/1249\": No space left on device'",
          "echo 'HINT:  Check free disk space.'",
          "echo 'child process exited with exit code 1'",
          `echo "initdb: removing contents of data directory \"$2\""`,
          "exit 1"] });
        const dir = makeTempDir("verify-full");
        try {
          const v = await script("verify.sh", { ...restoreEnv(), PATH: full.path, VERIFY_DATA_DIR: dir });
          assert.equal(v.status, 1, v.stderr);
          assert.match(v.lastLine, /verify FAILED: initdb failed: .*FATAL: could not extend file "base\/1\/1249": No space left on device/);
        } finally { fs.rmSync(dir, { recursive: true, force: true }); fs.rmSync(full.dir, { recursive: true, force: true }); }
      });
    });

    test("restore fails (exit 4) when restored row counts differ from the manifest", async () => {
      const m = JSON.parse((await s3.get(BUCKET, `${PREFIX}/runs/${GOOD_RUN}/manifest.json`)).toString()) as Manifest;
      m.databases[0]!.contents.tables["public.pgbench_branches"] = 2;
      await s3.put(BUCKET, `${PREFIX}/runs/tampered/manifest.json`, Buffer.from(JSON.stringify(m)));
      const r = await script("restore.sh", restoreEnv({ RESTORE_RUN_ID: "tampered", RESTORE_TARGET_DATABASE: "mlflow_tampered" }));
      assert.equal(r.status, 4, r.stderr);
      assert.match(r.lastLine, /restore FAILED: row count mismatch in mlflow_tampered_restoring_tampered \(mlflow_tampered untouched\): public\.pgbench_branches expected 2 got 1$/);
      assert.equal(pg.psql("SELECT count(*) FROM pg_database WHERE datname LIKE 'mlflow_tampered%'"), "0", "the copy built aside is dropped");
    });

    test("restore refuses a corrupted dump (sha256) and restores nothing", async () => {
      // A copy of the good run whose dump is then damaged (the good run stays intact for the other tests).
      const m = JSON.parse((await s3.get(BUCKET, `${PREFIX}/runs/${GOOD_RUN}/manifest.json`)).toString()) as Manifest;
      const good = await s3.get(BUCKET, m.databases[0]!.key);
      const key = `${PREFIX}/runs/corrupt/mlflow.dump`;
      m.databases[0]!.key = key;
      await s3.put(BUCKET, `${PREFIX}/runs/corrupt/manifest.json`, Buffer.from(JSON.stringify(m)));
      const bad = Buffer.from(good); // same size, one flipped byte: only the sha256 can tell
      bad[bad.length >> 1] ^= 0xff;
      await s3.put(BUCKET, key, bad);
      const r = await script("restore.sh", restoreEnv({ RESTORE_RUN_ID: "corrupt", RESTORE_TARGET_DATABASE: "mlflow_corrupt" }));
      assert.equal(r.status, 3, r.stderr);
      assert.match(r.lastLine, /restore FAILED: integrity check failed for .*mlflow\.dump: sha256 [0-9a-f]{64} != manifest [0-9a-f]{64}; nothing restored/);
      assert.equal(pg.psql("SELECT count(*) FROM pg_database WHERE datname = 'mlflow_corrupt'"), "0");
      await s3.put(BUCKET, key, good.subarray(0, 100));
      const r2 = await script("restore.sh", restoreEnv({ RESTORE_RUN_ID: "corrupt", RESTORE_TARGET_DATABASE: "mlflow_corrupt" }));
      assert.equal(r2.status, 3);
      assert.match(r2.lastLine, /restore FAILED: integrity check failed .*: size 100 != manifest \d+/);
    });
  });
});
