// Base backups and point-in-time restore end to end: real PostgreSQL 15 clusters with the pod's
// archive settings and pg_hba.conf, the replication role as the reconcile Job creates it,
// base-backup.sh / pitr-restore.sh run as the postgres OS user (uid 999 in the pod) against moto S3.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { extraRolesSql, rolePasswordEnv } from "../components/databaseRoles";
import { BASE_BACKUP_PREFIX, pgHbaConf, REPLICATION_DB_ROLE, walArchiveSettings, WAL_PREFIX } from "../components/walArchive";
import { assertNoLeftovers, awsEnvFor, makeTempDir, PG_BIN, PG_MAJOR, sleep, startMoto, type RunResult, type S3Server } from "./support/realpg";
import { clusterOn, initCluster, runAsPg, startArm, waitFor, WAL_SCRIPTS, type Cluster } from "./support/walpg";

const BUCKET = "pg-pitr";
const ARCHIVE_TIMEOUT = 2;
const REPL_PW = "repl 'pw' ;x";
const AUTH = { Authorization: "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0" };

describe(`base-backup.sh / pitr-restore.sh (real PostgreSQL ${PG_MAJOR} + moto S3)`, { concurrency: true }, () => {
    let s3: S3Server;
    let home: string;
    const cleanups: (() => Promise<void>)[] = [];

    const env = (prefix: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({
        ...process.env, ...awsEnvFor(s3.endpoint), PATH: `${PG_BIN}:${process.env.PATH}`, HOME: home,
        WAL_BUCKET: BUCKET, WAL_PREFIX: `${prefix}/${WAL_PREFIX}`, BASE_BACKUP_PREFIX: `${prefix}/${BASE_BACKUP_PREFIX}`, WAL_SSE: "AES256", ...extra,
    });

    /** A cluster as the pod runs it: archive settings, the pod's pg_hba.conf, the sidecar, the replication role. */
    async function platformCluster(tag: string, prefix: string, archiveTimeout = ARCHIVE_TIMEOUT): Promise<Cluster> {
        const c = await initCluster(tag, Object.fromEntries(walArchiveSettings(WAL_SCRIPTS, archiveTimeout)), env(prefix), pgHbaConf(), 1);
        cleanups.push(() => c.destroy());
        await c.start();
        const arm = await startArm(c);
        cleanups.push(() => arm.stop());
        const sql = path.join(c.dir, "roles.sql");
        fs.writeFileSync(sql, extraRolesSql([REPLICATION_DB_ROLE]));
        const r = spawnSync("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-f", sql], { encoding: "utf8", env: c.env({ [rolePasswordEnv("replicator")]: REPL_PW }) });
        assert.equal(r.status, 0, r.stderr);
        return c;
    }
    const baseBackup = (c: Cluster, prefix: string): Promise<RunResult> => runAsPg(path.join(WAL_SCRIPTS, "base-backup.sh"), [], env(prefix, {
        PGHOST: "127.0.0.1", PGPORT: String(c.port), PGUSER: "replicator", PGPASSWORD: REPL_PW, BASEBACKUP_CHECKPOINT: "fast",
    }));
    async function restore(prefix: string, target: string, extra: NodeJS.ProcessEnv = {}): Promise<{ r: RunResult; dir: string; data: string }> {
        const dir = makeTempDir("pitr-restore");
        cleanups.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
        const data = path.join(dir, "data");
        const r = await runAsPg(path.join(WAL_SCRIPTS, "pitr-restore.sh"), [], env(prefix, {
            RESTORE_TARGET_TIME: target, RESTORE_MODE: "throwaway", RESTORE_DATA_DIR: data, RESTORE_WORK_DIR: dir, RESTORE_PORT: String(20000 + Math.floor(Math.random() * 20000)), ...extra,
        }));
        return { r, dir, data };
    }
    /** Start a server on a restored data directory and read something from it. */
    async function query(dir: string, data: string, sql: string): Promise<string> {
        const c = await clusterOn(dir, data, {}, env("unused"));
        try {
            await c.start();
            return c.psql(sql);
        } finally {
            await c.stop("fast");
        }
    }
    const now = (c: Cluster) => c.psql(`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`);
    const walName = (c: Cluster) => c.psql("SELECT pg_walfile_name(pg_current_wal_lsn())");
    const inArchive = async (prefix: string, seg: string) => (await s3.list(BUCKET, `${prefix}/${WAL_PREFIX}/${seg}`)).includes(`${prefix}/${WAL_PREFIX}/${seg}.gz`);
    const waitArchived = (prefix: string, seg: string) => waitFor(`${seg} archived`, 30_000, async () => ((await inArchive(prefix, seg)) ? true : undefined), 100);

    before(async () => {
        s3 = await startMoto();
        await s3.createBucket(BUCKET);
        home = makeTempDir("pitrhome");
    });

    after(async () => {
        for (const c of cleanups.reverse()) await c().catch(() => undefined);
        await s3?.stop();
        if (home) fs.rmSync(home, { recursive: true, force: true });
        assertNoLeftovers();
    });

    test("PITR to T1 and T2 gives exactly the rows committed before each; before the first base backup is refused; tampering fails loudly", async () => {
        const P = "main";
        const c = await platformCluster("pitr", P);
        c.psql("CREATE TABLE runs (id int PRIMARY KEY, note text)");
        const tooEarly = now(c);
        await sleep(1100);
        const b0 = await baseBackup(c, P);
        assert.equal(b0.status, 0, b0.stderr);
        assert.match(b0.lastLine, /base-backup OK id=\S+ start_lsn=[0-9A-F]+\/[0-9A-F]+ stop_lsn=\S+ wal=[0-9A-F]{24}\.\.[0-9A-F]{24} bytes=\d+ seconds=/);

        const insert = (from: number, to: number) => c.psql(`INSERT INTO runs SELECT g, 'row ' || g FROM generate_series(${from}, ${to}) g`);
        insert(1, 10);
        const t1 = now(c);
        await sleep(50);
        insert(11, 20);
        await sleep(1100);
        const b1 = await baseBackup(c, P);
        assert.equal(b1.status, 0, b1.stderr);
        await sleep(1100);
        insert(21, 30);
        const t2 = now(c);
        await sleep(50);
        insert(31, 40);
        await waitArchived(P, walName(c));

        // The manifest of each base backup says what it is and matches the object.
        const manifests = (await s3.list(BUCKET, `${P}/${BASE_BACKUP_PREFIX}/`)).filter((k) => k.endsWith("/manifest.json"));
        assert.equal(manifests.length, 2);
        for (const k of manifests) {
            const m = JSON.parse((await s3.get(BUCKET, k)).toString());
            const body = await s3.get(BUCKET, m.key);
            assert.equal(body.length, m.size_bytes);
            assert.equal(createHash("sha256").update(body).digest("hex"), m.sha256);
            assert.match(m.start_lsn, /^[0-9A-F]+\/[0-9A-F]+$/);
            assert.match(m.start_wal, /^[0-9A-F]{24}$/);
            assert.equal(m.timeline, 1);
            assert.equal(m.wal_segment_size, 1024 * 1024);
            assert.match(m.server_version, new RegExp(`^${PG_MAJOR}\\.`));
            assert.ok(Date.parse(m.started_at) <= Date.parse(m.finished_at));
            assert.equal((await s3.head(BUCKET, m.key)).get("x-amz-server-side-encryption"), "AES256");
        }

        // T1 lies before B1: served from the older base backup B0. T2 from B1. Latest: everything.
        const verifyDir = makeTempDir("pitr-verify");
        cleanups.push(async () => fs.rmSync(verifyDir, { recursive: true, force: true }));
        const verify = runAsPg(path.join(WAL_SCRIPTS, "pitr-verify.sh"), [], env(P, {
            PGHOST: "127.0.0.1", PGPORT: String(c.port), PGUSER: "replicator", PGPASSWORD: REPL_PW,
            VERIFY_DATA_DIR: verifyDir, VERIFY_MAX_BASE_BACKUP_AGE_HOURS: "1", VERIFY_ARCHIVE_WAIT_SECONDS: "60", RESTORE_PORT: String(20000 + Math.floor(Math.random() * 20000)),
        }));
        // ("latest" is the crash test's.)
        const [r1, r2, early] = await Promise.all([restore(P, t1), restore(P, t2), restore(P, tooEarly)]);
        for (const x of [r1, r2]) assert.equal(x.r.status, 0, x.r.stderr);
        assert.match(r1.r.stderr, new RegExp(`step=choose base_backup=${b0.lastLine.match(/id=(\S+)/)![1]} `));
        assert.match(r2.r.stderr, new RegExp(`step=choose base_backup=${b1.lastLine.match(/id=(\S+)/)![1]} `));
        const ids = (x: { dir: string; data: string }) => query(x.dir, x.data, "SELECT count(*) || ':' || min(id) || '-' || max(id) FROM runs");
        assert.equal(await ids(r1), "10:1-10");
        assert.equal(await ids(r2), "30:1-30");
        // Before the oldest base backup finished, no restore is possible: refused, nothing started.
        assert.equal(early.r.status, 1);
        assert.match(early.r.lastLine, /FAILED: no base backup finished before .*: the earliest restorable time is after /);
        assert.equal(fs.existsSync(early.data), false);

        // The weekly verify: markers around a recent time on the live server, restored exactly.
        const v = await verify;
        assert.equal(v.status, 0, v.stderr);
        assert.match(v.lastLine, /pitr-verify OK target=\S+ marker_before=committed marker_after=.+ newest_base_backup_age_hours=0 /);

        // A tampered WAL file the restore to T2 needs (recorded sha256 kept, content changed).
        const m1 = JSON.parse((await s3.get(BUCKET, manifests.find((k) => k.includes(b1.lastLine.match(/id=(\S+)/)![1]))!)).toString());
        const walKey = `${P}/${WAL_PREFIX}/${m1.stop_wal}.gz`;
        const original = await s3.get(BUCKET, walKey);
        const sha = (await s3.head(BUCKET, walKey)).get("x-amz-meta-sha256")!;
        const bytes = gunzipSync(original);
        bytes[bytes.length - 100] ^= 0xff;
        await putWithSha(s3, walKey, gzipSync(bytes), sha);
        const tw = await restore(P, t2);
        assert.equal(tw.r.status, 1, tw.r.stderr);
        assert.match(tw.r.lastLine, /FAILED: recovery failed: .*restore-wal: FAILED: .*does not match its recorded sha256 .*tampered or corrupt/);
        await putWithSha(s3, walKey, original, sha);

        // A tampered base backup: refused before anything is extracted.
        const good = await s3.get(BUCKET, m1.key);
        const bad = Buffer.from(good);
        bad[bad.length >> 1] ^= 0x01;
        await s3.put(BUCKET, m1.key, bad);
        const tb = await restore(P, t2);
        assert.equal(tb.r.status, 1, tb.r.stderr);
        assert.match(tb.r.lastLine, /FAILED: base backup \S+ does not match its manifest .*tampered or corrupt, not restored/);
        assert.equal(fs.existsSync(tb.data), false);
        await s3.put(BUCKET, m1.key, good);
    });

    test("crash (pg_ctl stop -m immediate): restore in place to latest loses only commits in WAL not yet archived; the server then archives its new timeline", async () => {
        const P = "crash";
        // Segments end when full (the product's default archive_timeout, 60 s, never fires here), so
        // the archive's lag is one segment whenever the archiver keeps up with the writer.
        const c = await platformCluster("pitrcrash", P, 60);
        c.psql("CREATE TABLE runs (id int PRIMARY KEY, payload text, seg text)");
        const b = await baseBackup(c, P);
        assert.equal(b.status, 0, b.stderr);
        // Steady commits, each ~40 kB of WAL: a segment about every 25 commits (~5 s), slower than
        // one upload, as a real archiver must keep up with its server.
        const segOf = new Map<number, string>();
        for (let i = 1; i <= 45; i++) {
            segOf.set(i, c.psql(`INSERT INTO runs VALUES (${i}, (SELECT string_agg(md5(g::text || ${i}), '') FROM generate_series(1, 1200) g)); SELECT pg_walfile_name(pg_current_wal_lsn())`));
            await sleep(150);
        }
        await c.stop("immediate");
        const archived = new Set((await s3.list(BUCKET, `${P}/${WAL_PREFIX}/`)).map((k) => path.basename(k, ".gz")));
        // In place, on the crashed primary's own data directory, as the in-place job does on the
        // StatefulSet's volume: refused while a postmaster.pid is there (an immediate stop removes
        // it; a killed node does not), unless told the server is gone.
        fs.writeFileSync(path.join(c.data, "postmaster.pid"), "12345\n");
        const work = makeTempDir("pitr-inplace");
        cleanups.push(async () => fs.rmSync(work, { recursive: true, force: true }));
        const inPlace = (extra: NodeJS.ProcessEnv) => runAsPg(path.join(WAL_SCRIPTS, "pitr-restore.sh"), [], env(P, {
            RESTORE_TARGET_TIME: "latest", RESTORE_MODE: "in-place", RESTORE_DATA_DIR: c.data, RESTORE_WORK_DIR: work, RESTORE_PORT: String(20000 + Math.floor(Math.random() * 20000)), ...extra,
        }));
        const refused = await inPlace({});
        assert.equal(refused.status, 1);
        assert.match(refused.lastLine, /postmaster\.pid exists: is the server still running\? Scale the StatefulSet to 0 first/);
        const r = await inPlace({ RESTORE_FORCE: "yes" });
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.lastLine, /pitr-restore OK .* timeline=2 mode=in-place/);
        const aside = fs.readdirSync(path.dirname(c.data)).filter((d) => d.startsWith("data.before-"));
        assert.equal(aside.length, 1, "the old data directory is kept for rollback");
        // The pod's own server starts on the result and archives the new timeline.
        await c.start();
        await waitFor("the new timeline's history file in the archive", 30_000, async () => ((await inArchive(P, "00000002.history")) ? true : undefined), 200);
        const restored = new Set(c.psql("SELECT string_agg(id::text, ',' ORDER BY id) FROM runs").split(",").map(Number));
        const lost = [...segOf.keys()].filter((i) => !restored.has(i));
        const lostSegments = new Set(lost.map((i) => segOf.get(i)!));
        console.log(`# crash: ${segOf.size} commits, ${lost.length} lost, all in unarchived segment(s) ${[...lostSegments].join(", ") || "-"}`);
        for (const i of lost) assert.ok(!archived.has(segOf.get(i)!), `row ${i} lost although its segment ${segOf.get(i)} was archived`);
        // Every row of an archived segment is back; what is lost is a suffix in the last segment(s).
        assert.ok(lostSegments.size <= 1, `lost commits span ${lostSegments.size} segments`);
        if (lost.length > 0) assert.equal(Math.min(...lost), Math.max(...[...restored]) + 1);
    });
});

async function putWithSha(s3: S3Server, key: string, body: Buffer, sha: string): Promise<void> {
    const r = await fetch(`${s3.endpoint}/${BUCKET}/${key}`, { method: "PUT", body, headers: { ...AUTH, "x-amz-meta-sha256": sha } });
    await r.arrayBuffer();
    assert.ok(r.ok, `PUT ${key}: ${r.status}`);
}
