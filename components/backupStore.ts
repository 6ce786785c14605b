import * as pulumi from "@pulumi/pulumi";
import { PrefixExpiration, SecureBucket } from "./secureBucket";

export interface BackupStoreArgs {
    encryption: "aws:kms" | "AES256";
    /** Lifecycle rules of the jobs writing here (logical dumps, base backups, WAL), each under its own prefix. */
    expirations: PrefixExpiration[];
    /** Days a replaced or deleted object version is kept. */
    noncurrentVersionDays: number;
    /** Governance-mode Object Lock days; undefined leaves it off. */
    objectLockDays?: number;
    protectData: boolean;
}

/** What the jobs and the database pod need to know about the bucket they write to. */
export interface BackupBucket {
    readonly bucketName: pulumi.Output<string>;
    readonly bucketArn: pulumi.Output<string>;
    /** The bucket's KMS key when encryption is aws:kms. */
    readonly kmsKeyArn?: pulumi.Output<string>;
}

/** The bucket's component before it moved here; the alias keeps every child's URN (no replacement). */
const FORMER_PARENT = { type: "platform:index:Backup", name: "backup" };

/**
 * The backup bucket on its own, created before the database: WAL archiving runs inside the
 * PostgreSQL pod and needs the bucket (and its IAM role) before the StatefulSet exists, while the
 * logical backup jobs need the database first.
 */
export class BackupStore extends pulumi.ComponentResource implements BackupBucket {
    public readonly bucketName: pulumi.Output<string>;
    public readonly bucketArn: pulumi.Output<string>;
    public readonly kmsKeyArn?: pulumi.Output<string>;

    constructor(name: string, args: BackupStoreArgs, opts?: pulumi.ComponentResourceOptions) {
        super("platform:index:BackupStore", name, {}, opts);

        const bucket = new SecureBucket(`${name}-store`, {
            purpose: "PostgreSQL backups",
            encryption: args.encryption,
            expirations: args.expirations,
            noncurrentVersionDays: args.noncurrentVersionDays,
            objectLockDays: args.objectLockDays,
            protectData: args.protectData,
        }, {
            parent: this,
            aliases: [{ parent: pulumi.createUrn(FORMER_PARENT.name, FORMER_PARENT.type) }],
        });

        this.bucketName = bucket.bucketName;
        this.bucketArn = bucket.bucketArn;
        this.kmsKeyArn = bucket.kmsKeyArn;
        this.registerOutputs({ bucketName: this.bucketName, bucketArn: this.bucketArn, kmsKeyArn: this.kmsKeyArn });
    }
}
