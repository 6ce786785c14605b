// Real PostgreSQL servers and a moto S3 emulator for the script tests. The
// PostgreSQL is the one `pg_config` on PATH names: Debian's 15 here and in CI;
// put another version's bin directory first on PATH to run them against it.
// Every server runs in its own process group so it can be killed as a whole;
// a process 'exit' hook SIGKILLs whatever is still tracked, and
// assertNoLeftovers() proves nothing survived.
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

export const REPO = path.resolve(__dirname, "..", "..");
export const PG_BIN = spawnSync("pg_config", ["--bindir"], { encoding: "utf8" }).stdout.trim();
/** Major version of the PostgreSQL under test (the platform deploys 17; CI has 15). */
export const PG_MAJOR = Number(/\) (\d+)/.exec(spawnSync(path.join(PG_BIN, "postgres"), ["--version"], { encoding: "utf8" }).stdout)?.[1]);
export const IS_ROOT = process.getuid?.() === 0;
/** The AWS CLI the tests find on PATH (CLI v1 under pyenv here), for shims that wrap it. */
export const REAL_AWS = spawnSync("bash", ["-c", "command -v aws"], { encoding: "utf8" }).stdout.trim();
const PG_USER_IDS = (() => {
  const r = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" });
  const g = spawnSync("id", ["-g", "postgres"], { encoding: "utf8" });
  return { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
})();

const tracked = new Set<number>(); // process-group ids we started
const tempDirs = new Set<string>();
/** Every temp dir this process made, kept after removal so stray processes in them are caught. */
const everDirs = new Set<string>();
process.on("exit", () => {
  for (const pgid of tracked) {
    try { process.kill(-pgid, "SIGKILL"); } catch { /* already gone */ }
  }
});

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** A temp dir owned by the postgres OS user when we are root (initdb refuses root). */
export function makeTempDir(tag: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `pgbk-${tag}-`));
  if (IS_ROOT) fs.chownSync(dir, PG_USER_IDS.uid, PG_USER_IDS.gid);
  fs.chmodSync(dir, 0o755);
  tempDirs.add(dir);
  everDirs.add(dir);
  return dir;
}

/** Run as the postgres OS user when root (server-side binaries). */
export function asPg(cmd: string, args: string[]): [string, string[]] {
  return IS_ROOT ? ["runuser", ["-u", "postgres", "--", cmd, ...args]] : [cmd, args];
}

export interface RunResult { status: number; stdout: string; stderr: string; lastLine: string }

/** Run a command to completion without blocking the event loop. */
export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; cwd?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd ?? REPO, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      const lines = stderr.trimEnd().split("\n");
      resolve({ status: code ?? (signal ? 128 : 1), stdout, stderr, lastLine: lines[lines.length - 1] ?? "" });
    });
    // A child that exits before reading its input (a fast failure) closes the pipe: EPIPE is not
    // an error of ours, the exit status reports what happened.
    child.stdin.on("error", (err: NodeJS.ErrnoException) => { if (err.code !== "EPIPE") reject(err); });
    child.stdin.end(opts.input ?? "");
  });
}

function checked(r: SpawnSyncReturns<string>, what: string): string {
  if (r.status !== 0) throw new Error(`${what} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

export function spawnGroup(cmd: string, args: string[], logFile: string, env?: NodeJS.ProcessEnv): ChildProcess {
  const fd = fs.openSync(logFile, "a");
  const child = spawn(cmd, args, { detached: true, stdio: ["ignore", fd, fd], env: env ?? process.env });
  fs.closeSync(fd);
  if (child.pid === undefined) throw new Error(`cannot start ${cmd}`);
  tracked.add(child.pid);
  return child;
}

export async function stopGroup(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  const pgid = child.pid!;
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
  try { process.kill(-pgid, signal); } catch { /* gone */ }
  const timer = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 10_000).unref());
  if ((await Promise.race([exited, timer])) === "timeout") {
    try { process.kill(-pgid, "SIGKILL"); } catch { /* gone */ }
    await exited;
  }
  // Backends may outlive the postmaster for a moment; make sure the group is empty.
  for (let i = 0; i < 100 && groupAlive(pgid); i++) await sleep(50);
  if (groupAlive(pgid)) { try { process.kill(-pgid, "SIGKILL"); } catch { /* gone */ } }
  tracked.delete(pgid);
}

function groupAlive(pgid: number): boolean {
  try { process.kill(-pgid, 0); return true; } catch { return false; }
}
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface PgServer {
  dir: string;
  socketDir: string;
  port: number;
  superPassword: string;
  /** libpq env for a user; tcp=true goes through 127.0.0.1 with password auth. */
  env(user?: string, password?: string, tcp?: boolean): NodeJS.ProcessEnv;
  psql(sql: string, opts?: { db?: string; user?: string; password?: string; tcp?: boolean; vars?: Record<string, string> }): string;
  tryPsql(sql: string, opts?: { db?: string; user?: string; password?: string; tcp?: boolean }): SpawnSyncReturns<string>;
  stop(): Promise<void>;
}

const PG_ENV_CLEAN = ["PGHOST", "PGHOSTADDR", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGSERVICE", "PGPASSFILE"];
export function baseEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of PG_ENV_CLEAN) delete env[k];
  for (const k of Object.keys(env)) if (k.startsWith("AWS_")) delete env[k];
  return { ...env, ...extra };
}

/**
 * initdb + start a PG15 server: scram over TCP on a free loopback port, trust on its private socket.
 * `settings` adds server settings (e.g. archive_mode), each passed as -c name=value.
 */
export async function startPg(tag = "pg", settings: Record<string, string> = {}): Promise<PgServer> {
  const dir = makeTempDir(tag);
  const data = path.join(dir, "data");
  const superPassword = "super secret 'pw'";
  const pwfile = path.join(dir, "pw");
  fs.writeFileSync(pwfile, superPassword + "\n");
  if (IS_ROOT) fs.chownSync(pwfile, PG_USER_IDS.uid, PG_USER_IDS.gid);
  const [c, a] = asPg(path.join(PG_BIN, "initdb"), ["-D", data, "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", `--pwfile=${pwfile}`, "-E", "UTF8", "--no-locale", "--no-sync"]);
  checked(spawnSync(c, a, { encoding: "utf8" }), "initdb");
  const port = await freePort();
  const [pc, pa] = asPg(path.join(PG_BIN, "postgres"), ["-D", data, "-p", String(port), "-c", "listen_addresses=127.0.0.1", "-c", `unix_socket_directories=${dir}`, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", ...Object.entries(settings).flatMap(([k, v]) => ["-c", `${k}=${v}`])]);
  const child = spawnGroup(pc, pa, path.join(dir, "server.log"));
  const server: PgServer = {
    dir, socketDir: dir, port, superPassword,
    env(user = "postgres", password?: string, tcp = false) {
      return baseEnv({ PGHOST: tcp ? "127.0.0.1" : dir, PGPORT: String(port), PGUSER: user, ...(password !== undefined ? { PGPASSWORD: password } : {}) });
    },
    tryPsql(sql, o = {}) {
      return spawnSync("psql", ["-X", "-w", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", o.db ?? "postgres"], {
        input: sql, encoding: "utf8", env: server.env(o.user, o.password, o.tcp),
      });
    },
    psql(sql, o = {}) {
      const args = ["-X", "-w", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", o.db ?? "postgres"];
      for (const [k, v] of Object.entries(o.vars ?? {})) args.push("-v", `${k}=${v}`);
      return checked(spawnSync("psql", args, { input: sql, encoding: "utf8", env: server.env(o.user, o.password, o.tcp) }), `psql ${sql.slice(0, 60)}`).trimEnd();
    },
    async stop() {
      await stopGroup(child, "SIGINT"); // fast shutdown
      fs.rmSync(dir, { recursive: true, force: true });
      tempDirs.delete(dir);
    },
  };
  for (let i = 0; ; i++) {
    const r = spawnSync(path.join(PG_BIN, "pg_isready"), ["-q", "-h", dir, "-p", String(port)]);
    if (r.status === 0) break;
    if (child.exitCode !== null || i > 200) {
      await server.stop().catch(() => undefined);
      throw new Error(`postgres did not start: ${fs.existsSync(path.join(dir, "server.log")) ? "see log" : ""}`);
    }
    await sleep(100);
  }
  return server;
}

export interface S3Server {
  port: number;
  endpoint: string;
  /** env for the aws CLI pointed at this emulator. */
  awsEnv(): NodeJS.ProcessEnv;
  /** objectLockDays: Object Lock on, with that many days of GOVERNANCE default retention (as prod). */
  createBucket(name: string, opts?: { objectLockDays?: number }): Promise<void>;
  /** Unsigned REST calls: moto does not check signatures, and this avoids a CLI start per call. */
  get(bucket: string, key: string): Promise<Buffer>;
  head(bucket: string, key: string): Promise<Headers>;
  put(bucket: string, key: string, body: Buffer): Promise<void>;
  list(bucket: string, prefix?: string): Promise<string[]>;
  stop(): Promise<void>;
}

export function awsEnvFor(endpoint: string): NodeJS.ProcessEnv {
  return {
    AWS_ACCESS_KEY_ID: "test", AWS_SECRET_ACCESS_KEY: "test", AWS_REGION: "us-east-1", AWS_ENDPOINT_URL: endpoint,
    // moto 5.2.1 keeps a wrong CRC32 on objects server-side-copied from a
    // multipart upload, and botocore then rejects the download. Real S3 does
    // not; our own sha256 check is what guards integrity anyway.
    AWS_RESPONSE_CHECKSUM_VALIDATION: "when_required",
  };
}

export async function startMoto(): Promise<S3Server> {
  const port = await freePort();
  const dir = makeTempDir("moto");
  const child = spawnGroup("moto_server", ["-H", "127.0.0.1", "-p", String(port)], path.join(dir, "moto.log"));
  const endpoint = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try { const r = await fetch(`${endpoint}/`); await r.arrayBuffer(); break; } catch {
      if (child.exitCode !== null || i > 300) { await stopGroup(child, "SIGKILL"); throw new Error("moto_server did not start"); }
      await sleep(100);
    }
  }
  // moto does not verify signatures, but treats requests without credentials
  // as anonymous (403 on private objects): a syntactically valid header is enough.
  const headers = { Authorization: "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0" };
  const url = (b: string, k = "") => `${endpoint}/${b}/${k.split("/").map(encodeURIComponent).join("/")}`;
  return {
    port, endpoint,
    awsEnv: () => awsEnvFor(endpoint),
    async createBucket(name, opts = {}) {
      const lock = opts.objectLockDays !== undefined;
      const r = await fetch(`${endpoint}/${name}`, { method: "PUT", headers: { ...headers, ...(lock ? { "x-amz-bucket-object-lock-enabled": "true" } : {}) } });
      await r.arrayBuffer();
      if (!r.ok) throw new Error(`create bucket ${name}: ${r.status}`);
      if (!lock) return;
      const body = `<ObjectLockConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><ObjectLockEnabled>Enabled</ObjectLockEnabled>` +
        `<Rule><DefaultRetention><Mode>GOVERNANCE</Mode><Days>${opts.objectLockDays}</Days></DefaultRetention></Rule></ObjectLockConfiguration>`;
      const c = await fetch(`${endpoint}/${name}?object-lock`, { method: "PUT", headers, body });
      const text = await c.text();
      if (!c.ok) throw new Error(`object lock on ${name}: ${c.status} ${text}`);
    },
    async get(b, k) {
      const r = await fetch(url(b, k), { headers });
      const body = Buffer.from(await r.arrayBuffer());
      if (!r.ok) throw new Error(`GET ${b}/${k}: ${r.status}`);
      return body;
    },
    async head(b, k) {
      const r = await fetch(url(b, k), { method: "HEAD", headers });
      if (!r.ok) throw new Error(`HEAD ${b}/${k}: ${r.status}`);
      return r.headers;
    },
    async put(b, k, body) {
      const r = await fetch(url(b, k), { method: "PUT", body, headers });
      await r.arrayBuffer();
      if (!r.ok) throw new Error(`PUT ${b}/${k}: ${r.status}`);
    },
    async list(b, prefix = "") {
      const keys: string[] = [];
      let token = "";
      for (;;) {
        const q = new URLSearchParams({ "list-type": "2", prefix, ...(token ? { "continuation-token": token } : {}) });
        const r = await fetch(`${endpoint}/${b}?${q}`, { headers });
        const xml = await r.text();
        if (!r.ok) throw new Error(`LIST ${b}: ${r.status} ${xml}`);
        for (const m of xml.matchAll(/<Key>([^<]*)<\/Key>/g)) keys.push(decodeXml(m[1]!));
        const next = /<NextContinuationToken>([^<]*)<\/NextContinuationToken>/.exec(xml);
        if (!next) break;
        token = decodeXml(next[1]!);
      }
      return keys.sort();
    },
    async stop() {
      await stopGroup(child, "SIGTERM");
      fs.rmSync(dir, { recursive: true, force: true });
      tempDirs.delete(dir);
    },
  };
}

function decodeXml(s: string): string {
  return s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, "&");
}

/** Throw if any process we started, or any process mentioning one of our temp dirs, is still alive. */
export function assertNoLeftovers(): void {
  const alive = [...tracked].filter(groupAlive);
  const dirs = [...everDirs];
  const strays: string[] = [];
  for (const pid of fs.readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    let cmd = "";
    try { cmd = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " "); } catch { continue; }
    // Only this process's own dirs: other test files may run their servers at the same time.
    if (dirs.some((d) => cmd.includes(d))) strays.push(`${pid}: ${cmd}`);
  }
  if (alive.length || strays.length) throw new Error(`leftover processes: groups=${alive.join(",")} ${strays.join("; ")}`);
}

/** Environment of the official image's entrypoint, for init-db.sh. */
export function initDbEnv(pg: PgServer, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    ...pg.env("postgres"),
    PGPASSWORD: pg.superPassword,
    POSTGRES_USER: "postgres",
    POSTGRES_DB: "postgres",
    MLFLOW_DB_NAME: "mlflow",
    MLFLOW_AUTH_DB_NAME: "mlflow_auth",
    MLFLOW_DB_USER: "mlflow",
    MLFLOW_DB_PASSWORD: MLFLOW_PW,
    BACKUP_DB_USER: "backup",
    BACKUP_DB_PASSWORD: BACKUP_PW,
    ...extra,
  };
}
export const MLFLOW_PW = `ml'flow; DROP ROLE postgres; -- "pw" \\ x`;
export const BACKUP_PW = `b$ck'up "pw" ;`;
export const INIT_DB = path.join(REPO, "components/postgres/scripts/init-db.sh");

/** Source init-db.sh the way docker-entrypoint.sh does. */
export function sourceInitDb(env: NodeJS.ProcessEnv, after = ""): Promise<RunResult> {
  // --norc: with its stdin a socket (node's pipes are socketpairs) bash can take itself for an
  // rsh/ssh session and source ~/.bashrc (seen intermittently under a loaded full suite); this
  // machine's ~/.bashrc defines pyenv's shell functions, which the test counts as leaked. The
  // entrypoint's shell in the pod reads no rc file either.
  return run("bash", ["--norc", "-c", `set -Eeo pipefail; . "$1"; ${after}`, "entrypoint", INIT_DB], { env });
}
