// PostgreSQL 15 clusters of their own for the WAL archiving tests: each needs its own archive
// settings, is crashed and restarted, so the shared server of realpg.ts does not fit. Servers run
// as the postgres OS user (as in the pod, uid 999), so the archive/restore commands they run and the
// job scripts the tests run do too.
import { spawnSync, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { asPg, baseEnv, freePort, IS_ROOT, makeTempDir, PG_BIN, REPO, run, sleep, spawnGroup, stopGroup, type RunResult } from "./realpg";

export const WAL_SCRIPTS = path.join(REPO, "components/wal/scripts");
export const SUPER_PW = "super 'wal' pw";

export interface Cluster {
    dir: string;
    data: string;
    port: number;
    logFile: string;
    /** libpq env: superuser over the private socket. */
    env(extra?: NodeJS.ProcessEnv): NodeJS.ProcessEnv;
    psql(sql: string, db?: string): string;
    start(): Promise<void>;
    /** pg_ctl stop -m <mode>, then make sure nothing of the server is left. */
    stop(mode?: "fast" | "immediate"): Promise<void>;
    destroy(): Promise<void>;
    log(): string;
}

/** Run a script (bash) as the postgres OS user when we are root, with exactly this environment. */
export function runAsPg(script: string, args: string[], env: NodeJS.ProcessEnv): Promise<RunResult> {
    const [cmd, a] = asPg("bash", [script, ...args]);
    return run(cmd, a, { env });
}

function chownPg(p: string): void {
    if (IS_ROOT) spawnSync("chown", ["-R", "postgres:postgres", p]);
}

/**
 * initdb a fresh cluster; `conf` is the whole postgresql.conf (as in the pod, outside the data
 * directory), `hba` the pg_hba.conf it points to. `env` is the server's environment: the archive
 * and restore commands inherit it, as they inherit the postgres container's env in the pod.
 */
export async function initCluster(tag: string, conf: Record<string, string>, env: NodeJS.ProcessEnv, hba?: string, walSegSizeMb = 16): Promise<Cluster> {
    const dir = makeTempDir(tag);
    const data = path.join(dir, "data");
    const pwfile = path.join(dir, "pw");
    fs.writeFileSync(pwfile, SUPER_PW + "\n");
    chownPg(pwfile);
    const [c, a] = asPg(path.join(PG_BIN, "initdb"), ["-D", data, "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", `--pwfile=${pwfile}`, "-E", "UTF8", "--no-locale", "--no-sync", `--wal-segsize=${walSegSizeMb}`]);
    const r = spawnSync(c, a, { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`initdb: ${r.stderr}`);
    return clusterOn(dir, data, conf, env, hba);
}

/** A server on an existing data directory (e.g. one a restore produced). */
export async function clusterOn(dir: string, data: string, conf: Record<string, string>, env: NodeJS.ProcessEnv, hba?: string): Promise<Cluster> {
    const port = await freePort();
    const logFile = path.join(dir, `server-${port}.log`);
    const confFile = path.join(dir, `postgresql-${port}.conf`);
    const settings: Record<string, string> = {
        listen_addresses: "'127.0.0.1'",
        port: String(port),
        unix_socket_directories: `'${dir}'`,
        fsync: "off", // the tests crash processes, not the machine: the page cache survives
        ...conf,
        ...(hba !== undefined ? { hba_file: `'${path.join(dir, "pg_hba.conf")}'` } : {}),
    };
    fs.writeFileSync(confFile, Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join("\n") + "\n");
    if (hba !== undefined) fs.writeFileSync(path.join(dir, "pg_hba.conf"), hba);
    chownPg(dir);
    let child: ChildProcess | undefined;

    const cluster: Cluster = {
        dir, data, port, logFile,
        env: (extra = {}) => baseEnv({ PGHOST: dir, PGPORT: String(port), PGUSER: "postgres", PGDATABASE: "postgres", ...extra }),
        psql(sql, db = "postgres") {
            const r = spawnSync("psql", ["-X", "-w", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", db], { input: sql, encoding: "utf8", env: cluster.env() });
            if (r.status !== 0) throw new Error(`psql ${sql.slice(0, 80)}: ${r.stderr}`);
            return r.stdout.trimEnd();
        },
        async start() {
            const [pc, pa] = asPg(path.join(PG_BIN, "postgres"), ["-D", data, "-c", `config_file=${confFile}`]);
            child = spawnGroup(pc, pa, logFile, { ...env, PGDATA: data });
            for (let i = 0; ; i++) {
                const r = spawnSync(path.join(PG_BIN, "pg_isready"), ["-q", "-h", dir, "-p", String(port)]);
                if (r.status === 0) break;
                if (child.exitCode !== null || i > 600) throw new Error(`postgres did not start:\n${cluster.log()}`);
                await sleep(50);
            }
        },
        async stop(mode = "fast") {
            if (!child) return;
            const [sc, sa] = asPg(path.join(PG_BIN, "pg_ctl"), ["stop", "-D", data, "-m", mode, "-w", "-t", "30"]);
            spawnSync(sc, sa, { encoding: "utf8" });
            // Archive commands still running are the postmaster's grandchildren: end them too.
            await stopGroup(child, "SIGKILL");
            child = undefined;
        },
        async destroy() {
            await cluster.stop("immediate");
            fs.rmSync(dir, { recursive: true, force: true });
        },
        log: () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, "utf8") : ""),
    };
    return cluster;
}

/** Wait until `check` returns a value (not undefined), polling; throws after `timeoutMs`. */
export async function waitFor<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined> | T | undefined, everyMs = 100): Promise<T> {
    const end = Date.now() + timeoutMs;
    for (;;) {
        const v = await check();
        if (v !== undefined) return v;
        if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
        await sleep(everyMs);
    }
}

/** A TCP relay in front of S3 that can be taken down and brought back without losing S3's state. */
export interface Relay {
    port: number;
    endpoint: string;
    down(): Promise<void>;
    up(): Promise<void>;
    stop(): Promise<void>;
}

export async function startRelay(targetPort: number): Promise<Relay> {
    const port = await freePort();
    const sockets = new Set<net.Socket>();
    const server = net.createServer((client) => {
        const upstream = net.connect(targetPort, "127.0.0.1");
        for (const s of [client, upstream]) {
            sockets.add(s);
            s.on("close", () => sockets.delete(s));
            s.on("error", () => { client.destroy(); upstream.destroy(); });
        }
        client.pipe(upstream).pipe(client);
    });
    const listen = () => new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, "127.0.0.1", () => { server.off("error", reject); resolve(); });
    });
    const close = () => new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
    });
    await listen();
    return { port, endpoint: `http://127.0.0.1:${port}`, down: close, up: listen, stop: async () => { if (server.listening) await close(); } };
}

/** The pod's arm-archive-timeout.sh sidecar beside a test cluster, until stopped. */
export async function startArm(c: Cluster, intervalSeconds = "0.3"): Promise<{ stop(): Promise<void>; log(): string }> {
    const logFile = path.join(c.dir, "arm.log");
    const [cmd, args] = asPg("bash", [path.join(WAL_SCRIPTS, "arm-archive-timeout.sh")]);
    const child = spawnGroup(cmd, args, logFile, c.env({ WAL_ARM_INTERVAL: intervalSeconds }));
    const log = () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, "utf8") : "");
    await waitFor("arm-archive-timeout.sh to wake the checkpointer", 20_000, () => (/checkpointer woken/.test(log()) ? true : undefined));
    return { stop: () => stopGroup(child, "SIGTERM"), log };
}
