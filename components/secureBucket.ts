import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

/** A lifecycle rule scoped to one key prefix. */
export interface PrefixExpiration {
    id: string;
    prefix: string;
    days: number;
    /** Days replaced or deleted versions under the prefix are kept, when shorter than the bucket's. */
    noncurrentDays?: number;
}

export interface SecureBucketArgs {
    /** What the bucket holds, for the KMS key's description. */
    purpose: string;
    /** "aws:kms": a customer-managed key this component creates; "AES256": S3-managed keys. */
    encryption: "aws:kms" | "AES256";
    /** Delete current objects under these prefixes after so many days. */
    expirations: PrefixExpiration[];
    /** Days a replaced or deleted object version is kept. */
    noncurrentVersionDays: number;
    /** Governance-mode Object Lock: versions cannot be deleted for this many days (ransomware). */
    objectLockDays?: number;
    /** Keep the bucket (and its key) when the stack is destroyed. */
    protectData: boolean;
}

/**
 * An S3 bucket with the hardening every bucket of the platform needs: versioning, default
 * encryption, no public access, ACLs disabled, TLS only, and lifecycle rules that bound cost.
 */
export class SecureBucket extends pulumi.ComponentResource {
    public readonly bucketName: pulumi.Output<string>;
    public readonly bucketArn: pulumi.Output<string>;
    /** The bucket's KMS key when encryption is aws:kms. */
    public readonly kmsKeyArn?: pulumi.Output<string>;

    constructor(name: string, args: SecureBucketArgs, opts?: pulumi.ComponentResourceOptions) {
        super("platform:index:SecureBucket", name, {}, opts);
        // retainOnDelete keeps the data even after someone unprotects and destroys the stack. What
        // hardens the bucket (versioning, encryption, public-access block, TLS-only policy, lifecycle,
        // object lock) is a separate AWS resource: a destroy would strip it from a retained bucket
        // and leave it unversioned and open, so every child gets the same options as the bucket.
        const dataOpts = { parent: this, protect: args.protectData, retainOnDelete: args.protectData };

        const key = args.encryption === "aws:kms"
            ? new aws.kms.Key(`${name}-key`, {
                description: `Encryption of ${args.purpose}`,
                enableKeyRotation: true,
                deletionWindowInDays: 30,
            }, dataOpts)
            : undefined;

        const bucket = new aws.s3.Bucket(`${name}-bucket`, {
            objectLockEnabled: args.objectLockDays !== undefined,
            // A stack that does not protect its data (dev) can be destroyed with its backups.
            forceDestroy: !args.protectData,
        }, dataOpts);

        const versioning = new aws.s3.BucketVersioning(`${name}-versioning`, {
            bucket: bucket.id,
            versioningConfiguration: { status: "Enabled" },
        }, dataOpts);

        new aws.s3.BucketServerSideEncryptionConfiguration(`${name}-encryption`, {
            bucket: bucket.id,
            rules: [{
                applyServerSideEncryptionByDefault: key
                    ? { sseAlgorithm: "aws:kms", kmsMasterKeyId: key.arn }
                    : { sseAlgorithm: "AES256" },
                // One data key per bucket instead of per object: far fewer KMS calls.
                bucketKeyEnabled: key !== undefined,
            }],
        }, dataOpts);

        const publicAccess = new aws.s3.BucketPublicAccessBlock(`${name}-public-access`, {
            bucket: bucket.id,
            blockPublicAcls: true,
            blockPublicPolicy: true,
            ignorePublicAcls: true,
            restrictPublicBuckets: true,
        }, dataOpts);

        new aws.s3.BucketOwnershipControls(`${name}-ownership`, {
            bucket: bucket.id,
            rule: { objectOwnership: "BucketOwnerEnforced" },
        }, dataOpts);

        new aws.s3.BucketPolicy(`${name}-policy`, {
            bucket: bucket.id,
            policy: bucket.arn.apply((arn) => JSON.stringify({
                Version: "2012-10-17",
                Statement: [{
                    Sid: "DenyInsecureTransport",
                    Effect: "Deny",
                    Principal: "*",
                    Action: "s3:*",
                    Resource: [arn, `${arn}/*`],
                    Condition: { Bool: { "aws:SecureTransport": "false" } },
                }],
            })),
        }, { ...dataOpts, dependsOn: [publicAccess] });

        new aws.s3.BucketLifecycleConfiguration(`${name}-lifecycle`, {
            bucket: bucket.id,
            rules: [
                ...args.expirations.map((e) => ({
                    id: e.id,
                    status: "Enabled",
                    filter: { prefix: e.prefix },
                    expiration: { days: e.days },
                    ...(e.noncurrentDays !== undefined ? { noncurrentVersionExpiration: { noncurrentDays: e.noncurrentDays } } : {}),
                })),
                {
                    id: "noncurrent-versions",
                    status: "Enabled",
                    filter: {},
                    noncurrentVersionExpiration: { noncurrentDays: args.noncurrentVersionDays },
                    expiration: { expiredObjectDeleteMarker: true },
                },
                {
                    id: "abort-incomplete-multipart-uploads",
                    status: "Enabled",
                    filter: {},
                    abortIncompleteMultipartUpload: { daysAfterInitiation: 1 },
                },
            ],
        }, { ...dataOpts, dependsOn: [versioning] });

        if (args.objectLockDays !== undefined) {
            new aws.s3.BucketObjectLockConfiguration(`${name}-object-lock`, {
                bucket: bucket.id,
                objectLockEnabled: "Enabled",
                rule: { defaultRetention: { mode: "GOVERNANCE", days: args.objectLockDays } },
            }, { ...dataOpts, dependsOn: [versioning] });
        }

        this.bucketName = bucket.bucket;
        this.bucketArn = bucket.arn;
        this.kmsKeyArn = key?.arn;
        this.registerOutputs({ bucketName: this.bucketName, bucketArn: this.bucketArn, kmsKeyArn: this.kmsKeyArn });
    }
}
