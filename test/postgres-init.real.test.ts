// init-db.sh against a real PostgreSQL 15, sourced exactly like the official
// image's entrypoint does; every privilege is checked over TCP with scram.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  assertNoLeftovers, BACKUP_PW, initDbEnv, MLFLOW_PW, PG_MAJOR, sourceInitDb, startPg, type PgServer,
} from "./support/realpg";

describe(`init-db.sh (real PostgreSQL ${PG_MAJOR})`, () => {
  let pg: PgServer;
  let firstRun: { status: number; stdout: string; stderr: string };

  before(async () => {
    pg = await startPg("init");
    // Print the shell state before/after to prove nothing leaks into the entrypoint.
    firstRun = await sourceInitDb(initDbEnv(pg), 'echo "AFTER $- $(declare -F | wc -l)"');
  });
  after(async () => {
    await pg?.stop();
    assertNoLeftovers();
  });

  const asMlflow = { user: "mlflow", password: MLFLOW_PW, tcp: true };
  // The tracking store and the basic-auth user store get identical treatment.
  const MLFLOW_DBS = ["mlflow", "mlflow_auth"];
  const asBackup = { user: "backup", password: BACKUP_PW, tcp: true };

  test("is sourced without exiting the entrypoint shell or leaking functions/options", () => {
    assert.equal(firstRun.status, 0, firstRun.stderr);
    assert.match(firstRun.stdout, /^AFTER \S*e\S* 0$/m); // errexit still on, no functions left
    assert.doesNotMatch(firstRun.stdout + firstRun.stderr, /flow;|b\$ck/, "a password was printed");
  });

  test("mlflow role owns both its databases and their public schema, with no extra powers", () => {
    for (const db of MLFLOW_DBS) {
      assert.equal(pg.psql(`SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '${db}'`), "mlflow", db);
      assert.equal(pg.psql("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'public'", { db }), "mlflow", db);
      // Same ACLs as each other: only the owner and the backup role, PUBLIC has nothing.
      assert.equal(pg.psql(`SELECT datacl::text FROM pg_database WHERE datname = '${db}'`), "{mlflow=CTc/mlflow,backup=c/mlflow}", db);
      assert.equal(pg.psql("SELECT nspacl::text FROM pg_namespace WHERE nspname = 'public'", { db }), "{mlflow=UC/mlflow,backup=U/mlflow}", db);
    }
    assert.equal(pg.psql("SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls FROM pg_roles WHERE rolname = 'mlflow'"), "f|f|f|f|f");
  });

  test("mlflow (password with quotes, ; and spaces) can create tables in both its databases", () => {
    pg.psql("CREATE TABLE experiments (id serial PRIMARY KEY, name text); INSERT INTO experiments (name) VALUES ('e1')", { db: "mlflow", ...asMlflow });
    assert.equal(pg.psql("SELECT count(*) FROM experiments", { db: "mlflow", ...asMlflow }), "1");
    // What MLflow's basic-auth store creates on first start (users table), as the same role.
    pg.psql("CREATE TABLE users (id serial PRIMARY KEY, username text UNIQUE, password_hash text, is_admin boolean); INSERT INTO users (username, password_hash, is_admin) VALUES ('admin', 'x', true)", { db: "mlflow_auth", ...asMlflow });
    assert.equal(pg.psql("SELECT count(*) FROM users", { db: "mlflow_auth", ...asMlflow }), "1");
  });

  test("passwords are really checked (scram over TCP)", () => {
    const r = pg.tryPsql("SELECT 1", { db: "mlflow", user: "mlflow", password: "wrong", tcp: true });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /password authentication failed/);
  });

  test("mlflow cannot connect to other databases, create databases or roles", () => {
    for (const db of ["postgres", "template1"]) {
      const r = pg.tryPsql("SELECT 1", { db, ...asMlflow });
      assert.notEqual(r.status, 0, `mlflow connected to ${db}`);
      assert.match(r.stderr, /permission denied for database/);
    }
    assert.notEqual(pg.tryPsql("CREATE DATABASE evil", { db: "mlflow", ...asMlflow }).status, 0);
    assert.notEqual(pg.tryPsql("CREATE ROLE evil", { db: "mlflow", ...asMlflow }).status, 0);
  });

  test("other roles cannot connect to either mlflow database", () => {
    pg.psql("CREATE ROLE outsider LOGIN PASSWORD 'x'");
    for (const db of MLFLOW_DBS) {
      const r = pg.tryPsql("SELECT 1", { db, user: "outsider", password: "x", tcp: true });
      assert.notEqual(r.status, 0, `outsider connected to ${db}`);
      assert.match(r.stderr, new RegExp(`permission denied for database "${db}"`));
    }
  });

  test("backup role reads every table (even ones created later by mlflow) but cannot write", () => {
    pg.psql("CREATE TABLE later (v text); INSERT INTO later VALUES ('x'); SELECT lo_from_bytea(0, 'blob')", { db: "mlflow", ...asMlflow });
    assert.equal(pg.psql("SELECT (SELECT count(*) FROM experiments) + (SELECT count(*) FROM later)", { db: "mlflow", ...asBackup }), "2");
    const w = pg.tryPsql("INSERT INTO later VALUES ('y')", { db: "mlflow", ...asBackup });
    assert.notEqual(w.status, 0);
    assert.match(w.stderr, /read-only transaction/);
    assert.equal(pg.psql("SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = 'backup'"), "f|f|f");
    // The auth store too (created by mlflow above).
    assert.equal(pg.psql("SELECT username FROM users", { db: "mlflow_auth", ...asBackup }), "admin");
    const wa = pg.tryPsql("DELETE FROM users", { db: "mlflow_auth", ...asBackup });
    assert.match(wa.stderr, /read-only transaction/);
  });

  test("backup role can pg_dump every database and pg_dumpall --globals-only --no-role-passwords", () => {
    const env = pg.env("backup", BACKUP_PW, true);
    for (const db of [...MLFLOW_DBS, "postgres"]) {
      const r = spawnSync("pg_dump", ["-Fc", "-d", db], { env, encoding: "buffer", maxBuffer: 64 << 20 });
      assert.equal(r.status, 0, `pg_dump ${db}: ${r.stderr.toString()}`);
      assert.ok(r.stdout.length > 0);
    }
    const auth = spawnSync("pg_dump", ["--data-only", "-t", "users", "-d", "mlflow_auth"], { env, encoding: "utf8" });
    assert.equal(auth.status, 0, auth.stderr);
    assert.match(auth.stdout, /\badmin\b/);
    const g = spawnSync("pg_dumpall", ["--globals-only", "--no-role-passwords"], { env, encoding: "utf8" });
    assert.equal(g.status, 0, g.stderr);
    assert.match(g.stdout, /CREATE ROLE mlflow;/);
    assert.doesNotMatch(g.stdout, /SCRAM-SHA-256/);
  });

  test("re-running is harmless and re-applies passwords", async () => {
    const r = await sourceInitDb(initDbEnv(pg, { MLFLOW_DB_PASSWORD: "rotated pw" }), "echo AFTER");
    assert.equal(r.status, 0, r.stderr);
    assert.equal(pg.psql("SELECT count(*) FROM experiments", { db: "mlflow", user: "mlflow", password: "rotated pw", tcp: true }), "1");
    assert.equal(pg.psql("SELECT count(*) FROM users", { db: "mlflow_auth", user: "mlflow", password: "rotated pw", tcp: true }), "1");
    assert.equal(pg.psql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'mlflow_auth'"), "mlflow");
  });

  test("a missing variable fails the entrypoint with one line naming it", async () => {
    for (const v of ["MLFLOW_DB_PASSWORD", "MLFLOW_AUTH_DB_NAME", "BACKUP_DB_USER", "POSTGRES_USER"]) {
      const r = await sourceInitDb(initDbEnv(pg, { [v]: "" }), "echo SHOULD-NOT-RUN");
      assert.notEqual(r.status, 0);
      assert.doesNotMatch(r.stdout, /SHOULD-NOT-RUN/);
      assert.equal(r.stderr.trim(), `init-db.sh: missing required environment variable ${v}`);
    }
  });

  test("refuses one database for both stores, or the maintenance database as either", async () => {
    for (const extra of [{ MLFLOW_AUTH_DB_NAME: "mlflow" }, { MLFLOW_AUTH_DB_NAME: "postgres" }, { MLFLOW_DB_NAME: "postgres" }]) {
      const r = await sourceInitDb(initDbEnv(pg, extra), "echo SHOULD-NOT-RUN");
      assert.notEqual(r.status, 0);
      assert.doesNotMatch(r.stdout, /SHOULD-NOT-RUN/);
      assert.equal(r.stderr.trim(), "init-db.sh: invalid environment: MLFLOW_DB_NAME, MLFLOW_AUTH_DB_NAME and POSTGRES_DB must be three different databases");
    }
    assert.equal(pg.psql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'postgres'"), "postgres");
  });
});
