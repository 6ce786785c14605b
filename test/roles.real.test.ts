// The role reconcile Job's script (reconcile-roles.sh + the generated extra roles' SQL) against a
// real PostgreSQL 15 that already holds data: what `pulumi up` does to a live database.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { DatabaseRole, extraRolesSql, rolePasswordEnv } from "../components/databaseRoles";
import {
  assertNoLeftovers, initDbEnv, makeTempDir, MLFLOW_PW, PG_MAJOR, REPO, run, sourceInitDb, startPg, type PgServer,
} from "./support/realpg";

const SCRIPT = path.join(REPO, "components/postgres/scripts/reconcile-roles.sh");
const METRICS: DatabaseRole = { name: "metrics", memberOf: ["pg_monitor"], connect: ["postgres"] };
const REPLICATOR: DatabaseRole = { name: "replicator", replication: true };
const METRICS_PW = `met'rics "pw" ;$x`;

/** Everything a reconcile decides, except the password verifiers (re-salted on every ALTER). */
const STATE_SQL = `
SELECT string_agg(format('%s:%s%s%s%s%s%s', rolname, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolcanlogin), ' ' ORDER BY rolname) FROM pg_roles WHERE rolname !~ '^pg_'
UNION ALL SELECT string_agg(format('%s>%s', g.rolname, u.rolname), ' ' ORDER BY 1) FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
UNION ALL SELECT string_agg(format('%s:%s:%s', datname, pg_get_userbyid(datdba), datacl), ' ' ORDER BY datname) FROM pg_database
UNION ALL SELECT string_agg(format('%s:%s', rolname, setconfig), ' ' ORDER BY rolname) FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole`;

describe(`reconcile-roles.sh (real PostgreSQL ${PG_MAJOR}, a database that already holds data)`, () => {
  let pg: PgServer;
  let dir: string;

  const reconcile = (roles: DatabaseRole[], extraEnv: NodeJS.ProcessEnv = {}) => {
    const sql = path.join(dir, `roles-${roles.map((r) => r.name).join("-") || "none"}.sql`);
    fs.writeFileSync(sql, extraRolesSql(roles));
    return run("bash", [SCRIPT], {
      env: {
        ...initDbEnv(pg),
        // What the Job has: the server over TCP as the superuser, not the entrypoint's socket.
        PGHOST: "127.0.0.1", PGUSER: "postgres", PGDATABASE: "postgres",
        ROLES_SQL: sql, WAIT_SECONDS: "20",
        [rolePasswordEnv("metrics")]: METRICS_PW,
        [rolePasswordEnv("replicator")]: "repl pw",
        ...extraEnv,
      },
    });
  };

  before(async () => {
    pg = await startPg("roles");
    dir = makeTempDir("roles-sql");
    // A stack created before the reconcile Job existed: first init only, then MLflow's data.
    const init = await sourceInitDb(initDbEnv(pg));
    assert.equal(init.status, 0, init.stderr);
    pg.psql("CREATE TABLE runs (id int); INSERT INTO runs VALUES (1), (2)", { db: "mlflow", user: "mlflow", password: MLFLOW_PW, tcp: true });
  });
  after(async () => {
    await pg?.stop();
    assertNoLeftovers();
  });

  test("adds new roles to the existing database, exactly as declared", async () => {
    const r = await reconcile([METRICS, REPLICATOR]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.lastLine, /^reconcile-roles: OK/);
    assert.doesNotMatch(r.stdout + r.stderr, /met'rics|repl pw|ml'flow/, "a password was printed");
    assert.equal(pg.psql("SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = 'metrics'"), "f|f|f|f|f|t");
    assert.equal(pg.psql("SELECT rolreplication, rolsuper FROM pg_roles WHERE rolname = 'replicator'"), "t|f");
    assert.equal(pg.psql("SELECT pg_has_role('metrics', 'pg_monitor', 'MEMBER')"), "t");
    // The exporter's view: server statistics through pg_monitor, over TCP with its password.
    const asMetrics = { user: "metrics", password: METRICS_PW, tcp: true };
    assert.equal(pg.psql("SELECT count(*) > 0 FROM pg_stat_activity WHERE query IS NOT NULL", asMetrics), "t");
    assert.equal(pg.psql("SELECT pg_database_size('mlflow') > 0", asMetrics), "t");
    // ...but no CONNECT where it was not declared, and no data.
    const denied = pg.tryPsql("SELECT 1", { db: "mlflow", ...asMetrics });
    assert.match(denied.stderr, /permission denied for database "mlflow"/);
    assert.match(pg.tryPsql("SELECT 1", { db: "postgres", user: "replicator", password: "repl pw", tcp: true }).stderr, /permission denied for database "postgres"/);
    // MLflow's data is untouched.
    assert.equal(pg.psql("SELECT count(*) FROM runs", { db: "mlflow", user: "mlflow", password: MLFLOW_PW, tcp: true }), "2");
  });

  test("a rotated password reaches the running database; the old one stops working", async () => {
    const r = await reconcile([METRICS, REPLICATOR], { MLFLOW_DB_PASSWORD: "rotated mlflow pw", [rolePasswordEnv("metrics")]: "rotated metrics pw" });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(pg.psql("SELECT count(*) FROM runs", { db: "mlflow", user: "mlflow", password: "rotated mlflow pw", tcp: true }), "2");
    assert.match(pg.tryPsql("SELECT 1", { db: "mlflow", user: "mlflow", password: MLFLOW_PW, tcp: true }).stderr, /password authentication failed/);
    assert.equal(pg.psql("SELECT 1", { user: "metrics", password: "rotated metrics pw", tcp: true }), "1");
    // Back to the stack's passwords for the next tests.
    assert.equal((await reconcile([METRICS, REPLICATOR])).status, 0);
  });

  test("running again changes nothing", async () => {
    const before = pg.psql(STATE_SQL);
    const r = await reconcile([METRICS, REPLICATOR]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(pg.psql(STATE_SQL), before);
  });

  test("puts back what was changed by hand: attributes, memberships, CONNECT grants, lost hardening", async () => {
    const wanted = pg.psql(STATE_SQL);
    pg.psql(`ALTER ROLE metrics CREATEDB REPLICATION; GRANT pg_read_all_data TO metrics; GRANT CONNECT ON DATABASE mlflow TO metrics;
             ALTER ROLE backup RESET default_transaction_read_only; GRANT CONNECT ON DATABASE mlflow TO PUBLIC; ALTER DATABASE mlflow_auth OWNER TO postgres`);
    assert.notEqual(pg.psql(STATE_SQL), wanted);
    const r = await reconcile([METRICS, REPLICATOR]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(pg.psql(STATE_SQL), wanted);
  });

  test("a role missing its password fails with one line naming the variable, and changes nothing", async () => {
    const before = pg.psql(STATE_SQL);
    const r = await reconcile([METRICS, { name: "newcomer" }]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /ROLE_NEWCOMER_PASSWORD is not set/);
    assert.match(r.lastLine, /^reconcile-roles: FAILED: extra roles could not be applied/);
    assert.equal(pg.psql("SELECT count(*) FROM pg_roles WHERE rolname = 'newcomer'"), "0");
    assert.equal(pg.psql(STATE_SQL), before);
  });

  test("an unreachable server fails after WAIT_SECONDS with the reason", async () => {
    const r = await reconcile([METRICS], { PGPORT: "1", WAIT_SECONDS: "1" });
    assert.notEqual(r.status, 0);
    assert.match(r.lastLine, /^reconcile-roles: FAILED: server 127\.0\.0\.1:1 not accepting connections after 1 s$/);
  });
});
