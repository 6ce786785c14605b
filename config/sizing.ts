// How PostgreSQL's connections and memory are budgeted: shared by the validation (mlflow.ts,
// data.ts) and the components that apply the settings (postgres.ts, mlflow.ts).
import { quantityBytes } from "./checks";
import { MlflowConfig } from "./types";

/**
 * Connections to PostgreSQL that are not MLflow's pools, counted against postgres.maxConnections:
 * superuser_reserved_connections (PostgreSQL's default 3, unavailable to other roles), the
 * backup, restore and role-reconcile jobs (one each), the metrics exporter, one database
 * migration of a starting pod, and two operator sessions (psql).
 */
export const RESERVED_CONNECTIONS = { superuserReserved: 3, backup: 1, restore: 1, roleReconcile: 1, metricsExporter: 2, migration: 1, operator: 2 } as const;

/**
 * The most connections MLflow's pools can hold at once: during a rolling update one pod more
 * than replicas runs (the chart's default surge of 100% with one replica, our maxSurge 1 with
 * more); every worker process opens an engine for the tracking store and one for the model
 * registry (counted separately, as MLflow may not share them) and, with auth, one for mlflow_auth;
 * each engine holds up to pool + overflow connections.
 */
export function mlflowPeakConnections(m: Pick<MlflowConfig, "replicas" | "workers" | "databasePoolSize" | "databaseMaxOverflow" | "auth">): number {
    const pods = m.replicas + 1;
    const engines = 2 + (m.auth ? 1 : 0);
    return pods * m.workers * engines * (m.databasePoolSize + m.databaseMaxOverflow);
}

export function reservedConnections(): number {
    return Object.values(RESERVED_CONNECTIONS).reduce((a, b) => a + b, 0);
}

/**
 * The largest pool (up to 10, plus up to 5 overflow) that keeps MLflow's peak within what
 * postgres.maxConnections leaves after the reserved connections; undefined when not even one
 * connection per engine fits.
 */
export function defaultDatabasePool(m: Pick<MlflowConfig, "replicas" | "workers" | "auth">, maxConnections: number): { size: number; overflow: number } | undefined {
    const engines = mlflowPeakConnections({ ...m, databasePoolSize: 1, databaseMaxOverflow: 0 });
    const perEngine = Math.floor((maxConnections - reservedConnections()) / engines);
    if (perEngine < 1) return undefined;
    const overflow = Math.min(5, Math.floor(perEngine / 3));
    return { size: Math.min(10, perEngine - overflow), overflow };
}


/**
 * The memory model behind postgres.maxConnections: the settings postgresConf (components/postgres.ts)
 * writes for a memory limit are shared_buffers = limit/4 and maintenance_work_mem = limit/16 within
 * 64MB-1GB; every connection must then still have room for at least one work_mem at its 4MB floor.
 * (A backend may use several work_mem at once; the sizing spreads the rest of memory over three
 * per connection, so this is the least a limit must allow, not a generous budget.)
 */
export const WORK_MEM_FLOOR_MIB = 4;

export function maxConnectionsFor(memoryLimit: string): number {
    const mib = quantityBytes(memoryLimit) / 1024 ** 2;
    const maintenance = Math.min(1024, Math.max(64, mib / 16));
    return Math.floor((mib - mib / 4 - maintenance) / WORK_MEM_FLOOR_MIB);
}

/** The smallest memory limit, in 256Mi steps, that fits `connections`. */
export function memoryFor(connections: number): string {
    for (let mib = 256; ; mib += 256) {
        const q = mib % 1024 === 0 ? `${mib / 1024}Gi` : `${mib}Mi`;
        if (maxConnectionsFor(q) >= connections) return q;
    }
}
