// init-db.sh against a real PostgreSQL 15, sourced exactly like the official
// image's entrypoint does; every privilege is checked over TCP with scram.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  assertNoLeftovers, BACKUP_PW, initDbEnv, MLFLOW_PW, sourceInitDb, startPg, type PgServer,
} from "./support/realpg";

describe("init-db.sh (real PostgreSQL 15)", () => {
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
  const asBackup = { user: "backup", password: BACKUP_PW, tcp: true };

  test("is sourced without exiting the entrypoint shell or leaking functions/options", () => {
    assert.equal(firstRun.status, 0, firstRun.stderr);
    assert.match(firstRun.stdout, /^AFTER \S*e\S* 0$/m); // errexit still on, no functions left
    assert.doesNotMatch(firstRun.stdout + firstRun.stderr, /flow;|b\$ck/, "a password was printed");
  });

  test("mlflow role owns its database and the public schema, with no extra powers", () => {
    assert.equal(pg.psql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'mlflow'"), "mlflow");
    assert.equal(pg.psql("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'public'", { db: "mlflow" }), "mlflow");
    assert.equal(pg.psql("SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls FROM pg_roles WHERE rolname = 'mlflow'"), "f|f|f|f|f");
  });

  test("mlflow (password with quotes, ; and spaces) can create tables in its database", () => {
    pg.psql("CREATE TABLE experiments (id serial PRIMARY KEY, name text); INSERT INTO experiments (name) VALUES ('e1')", { db: "mlflow", ...asMlflow });
    assert.equal(pg.psql("SELECT count(*) FROM experiments", { db: "mlflow", ...asMlflow }), "1");
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

  test("other roles cannot connect to the mlflow database", () => {
    pg.psql("CREATE ROLE outsider LOGIN PASSWORD 'x'");
    const r = pg.tryPsql("SELECT 1", { db: "mlflow", user: "outsider", password: "x", tcp: true });
    assert.match(r.stderr, /permission denied for database "mlflow"/);
  });

  test("backup role reads every table (even ones created later by mlflow) but cannot write", () => {
    pg.psql("CREATE TABLE later (v text); INSERT INTO later VALUES ('x'); SELECT lo_from_bytea(0, 'blob')", { db: "mlflow", ...asMlflow });
    assert.equal(pg.psql("SELECT (SELECT count(*) FROM experiments) + (SELECT count(*) FROM later)", { db: "mlflow", ...asBackup }), "2");
    const w = pg.tryPsql("INSERT INTO later VALUES ('y')", { db: "mlflow", ...asBackup });
    assert.notEqual(w.status, 0);
    assert.match(w.stderr, /read-only transaction/);
    assert.equal(pg.psql("SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = 'backup'"), "f|f|f");
  });

  test("backup role can pg_dump every database and pg_dumpall --globals-only --no-role-passwords", () => {
    const env = pg.env("backup", BACKUP_PW, true);
    for (const db of ["mlflow", "postgres"]) {
      const r = spawnSync("pg_dump", ["-Fc", "-d", db], { env, encoding: "buffer", maxBuffer: 64 << 20 });
      assert.equal(r.status, 0, `pg_dump ${db}: ${r.stderr.toString()}`);
      assert.ok(r.stdout.length > 0);
    }
    const g = spawnSync("pg_dumpall", ["--globals-only", "--no-role-passwords"], { env, encoding: "utf8" });
    assert.equal(g.status, 0, g.stderr);
    assert.match(g.stdout, /CREATE ROLE mlflow;/);
    assert.doesNotMatch(g.stdout, /SCRAM-SHA-256/);
  });

  test("re-running is harmless and re-applies passwords", async () => {
    const r = await sourceInitDb(initDbEnv(pg, { MLFLOW_DB_PASSWORD: "rotated pw" }), "echo AFTER");
    assert.equal(r.status, 0, r.stderr);
    assert.equal(pg.psql("SELECT count(*) FROM experiments", { db: "mlflow", user: "mlflow", password: "rotated pw", tcp: true }), "1");
  });

  test("a missing variable fails the entrypoint with one line naming it", async () => {
    for (const v of ["MLFLOW_DB_PASSWORD", "BACKUP_DB_USER", "POSTGRES_USER"]) {
      const r = await sourceInitDb(initDbEnv(pg, { [v]: "" }), "echo SHOULD-NOT-RUN");
      assert.notEqual(r.status, 0);
      assert.doesNotMatch(r.stdout, /SHOULD-NOT-RUN/);
      assert.equal(r.stderr.trim(), `init-db.sh: missing required environment variable ${v}`);
    }
  });
});
