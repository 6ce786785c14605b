// storage.* and postgres.*: the EBS StorageClass and the PostgreSQL StatefulSet.
import { bool, int, isBinaryQuantity, isDns1123Label, list, noUnknownKeys, oneOf, Problems, quantityBytes, resources, section, str } from "./checks";
import { maxConnectionsFor, memoryFor, WORK_MEM_FLOOR_MIB } from "./sizing";
import { PostgresConfig, ReclaimPolicy, StorageConfig } from "./types";

const POSTGRES_MAJORS = [14, 15, 16, 17, 18];
const KMS_KEY_ARN = /^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key\/[0-9a-f-]{36}$/;

/** storage.*: reclaimPolicy defaults to Retain in a production stack. */
export function storageConfig(p: Problems, raw: unknown, production: boolean): StorageConfig {
    const s = section(p, "storage", raw);
    noUnknownKeys(p, "storage", s, ["className", "volumeType", "reclaimPolicy", "isDefault", "kmsKeyArn"]);
    const storage: StorageConfig = {
        // EKS already ships a StorageClass named gp2 on the in-tree provisioner, so ours needs another name.
        className: str(p, "storage.className", s.className, "gp2-csi", (v) => isDns1123Label(v) && v !== "gp2", "is not a DNS-1123 name other than gp2 (EKS owns gp2)"),
        volumeType: oneOf(p, "storage.volumeType", s.volumeType, "gp2", ["gp2", "gp3", "io1", "io2"]),
        reclaimPolicy: oneOf<ReclaimPolicy>(p, "storage.reclaimPolicy", s.reclaimPolicy, production ? "Retain" : "Delete", ["Delete", "Retain"]),
        isDefault: bool(p, "storage.isDefault", s.isDefault, false),
        kmsKeyArn: s.kmsKeyArn === undefined ? undefined : str(p, "storage.kmsKeyArn", s.kmsKeyArn, "", (v) => KMS_KEY_ARN.test(v), "is not a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>)"),
    };
    return storage;
}

export function postgresConfig(p: Problems, raw: unknown): PostgresConfig {
    const pg = section(p, "postgres", raw);
    noUnknownKeys(p, "postgres", pg, ["namespace", "imageTag", "storageSize", "previousStorageSizes", "resources", "maxConnections"]);
    const imageTag = str(p, "postgres.imageTag", pg.imageTag, "17.6", (v) => /^(1[4-8])\.[0-9]+$/.test(v), `is not a pinned postgres image tag MAJOR.MINOR with major ${POSTGRES_MAJORS.join(", ")} (e.g. 17.6)`);
    const postgres: PostgresConfig = {
        namespace: str(p, "postgres.namespace", pg.namespace, "data", isDns1123Label, "is not a DNS-1123 label (lowercase letters, digits, '-', at most 63)"),
        imageTag,
        majorVersion: Number(imageTag.split(".")[0]),
        storageSize: str(p, "postgres.storageSize", pg.storageSize, "20Gi", isBinaryQuantity, "is not a Kubernetes quantity (e.g. 20Gi)"),
        previousStorageSizes: list(p, "postgres.previousStorageSizes", pg.previousStorageSizes, [], isBinaryQuantity, "is not a Kubernetes quantity (e.g. 20Gi)", 0),
        resources: resources(p, "postgres.resources", pg.resources, { cpuRequest: "250m", memoryRequest: "1Gi", memoryLimit: "1Gi" }),
        maxConnections: int(p, "postgres.maxConnections", pg.maxConnections, 100, 20, 5000),
    };
    if (isBinaryQuantity(postgres.storageSize) && quantityBytes(postgres.storageSize) < quantityBytes("1Gi")) {
        p.add("postgres.storageSize", postgres.storageSize, "is below the 1Gi an EBS volume can be");
    }
    // An EBS volume (and a bound claim) can only grow. The stack file records the sizes the volume
    // had, so a shrink is refused here, before anything is planned, not by the API server mid-update.
    const sizes = [...postgres.previousStorageSizes, postgres.storageSize];
    for (let i = 1; i < sizes.length; i++) {
        if (quantityBytes(sizes[i]) <= quantityBytes(sizes[i - 1])) {
            const isCurrent = i === sizes.length - 1;
            p.add(isCurrent ? "postgres.storageSize" : `postgres.previousStorageSizes[${i}]`, sizes[i],
                `is not larger than ${sizes[i - 1]}, the volume's previous size (postgres.previousStorageSizes); a volume can only grow (to shrink, restore a backup into a new stack)`);
        }
    }
    if (quantityBytes(postgres.resources.memoryLimit) < quantityBytes("256Mi")) {
        p.add("postgres.resources.memoryLimit", postgres.resources.memoryLimit, "is below the 256Mi PostgreSQL needs");
    } else if (postgres.maxConnections > maxConnectionsFor(postgres.resources.memoryLimit)) {
        p.add("postgres.maxConnections", postgres.maxConnections,
            `does not fit postgres.resources.memoryLimit ${postgres.resources.memoryLimit} (shared_buffers, maintenance_work_mem and ${WORK_MEM_FLOOR_MIB}MB of work_mem per connection): ` +
            `raise postgres.resources.memoryLimit (and memoryRequest) to at least ${memoryFor(postgres.maxConnections)}, or lower postgres.maxConnections to ${maxConnectionsFor(postgres.resources.memoryLimit)} or fewer`);
    }
    return postgres;
}
