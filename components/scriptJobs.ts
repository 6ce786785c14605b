// What every script job of the platform (logical backups, base backups, restores, verifies) shares:
// the postgres image running a script from a ConfigMap, with the pinned AWS CLI copied in by an init
// container, under the restricted Pod Security Standard. One definition, so a hardening change
// reaches every job.
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { BackupBucket } from "./backupStore";
import { IrsaRole } from "./irsaRole";

/** Where the AWS CLI v2 image keeps its installation, and where the jobs mount their copy of it. */
export const AWS_CLI_DIR = "/usr/local/aws-cli";

export const RESTRICTED = { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } };

/** The official postgres image's postgres user; fsGroup makes mounted volumes writable to it. */
export const POD_SECURITY = {
    runAsUser: 999,
    runAsGroup: 999,
    fsGroup: 999,
    runAsNonRoot: true,
    seccompProfile: { type: "RuntimeDefault" },
};

/** The init container that copies the pinned AWS CLI v2 into a volume: nothing installed in the postgres image. */
export function awsCliInitContainer(imageTag: string, volume: string): k8s.types.input.core.v1.Container {
    return {
        name: "aws-cli",
        image: `public.ecr.aws/aws-cli/aws-cli:${imageTag}`,
        // A new directory on the volume: `cp -a` onto the volume's root would try to set the root's
        // times, which a non-root user may not, and fail the pod.
        command: ["cp", "-R", "-P", `${AWS_CLI_DIR}/v2`, "/aws-cli/"],
        resources: { requests: { cpu: "50m", memory: "64Mi" }, limits: { memory: "256Mi" } },
        securityContext: RESTRICTED,
        volumeMounts: [{ name: volume, mountPath: "/aws-cli" }],
    };
}

/**
 * A job's scratch space: an ephemeral claim that lives and dies with its pod. Its StorageClass must
 * reclaim with Delete, or every run leaves a released EBS volume behind.
 */
export function scratchVolume(storageClassName: pulumi.Input<string>, size: string): k8s.types.input.core.v1.Volume {
    return {
        name: "scratch",
        ephemeral: {
            volumeClaimTemplate: {
                spec: { accessModes: ["ReadWriteOnce"], storageClassName, resources: { requests: { storage: size } } },
            },
        },
    };
}

/**
 * What every family of script jobs against the database and the backup bucket (logical backups,
 * base backups and PITR) is given: where PostgreSQL and the bucket are, the images, the IRSA
 * provider, the verify schedule and the scratch space a restore needs.
 */
export interface DatabaseJobsArgs {
    bucket: BackupBucket;
    /** The database's namespace: the jobs run beside it and read its Secrets (the Postgres component's output, so they wait for it). */
    namespace: pulumi.Input<string>;
    /** Where the jobs connect: the primary's DNS name and port. */
    postgresHost: pulumi.Input<string>;
    postgresPort: pulumi.Input<number>;
    /** The server's image, so the client tools (and a restoring server) match its major version. */
    postgresImage: string;
    encryption: "aws:kms" | "AES256";
    region: string;
    awsCliImageTag: string;
    oidcProviderArn: pulumi.Input<string>;
    oidcIssuer: pulumi.Input<string>;
    timeZone: string;
    verifySchedule: string;
    verifySuspended: boolean;
    /**
     * StorageClass for the restore and verify jobs' ephemeral scratch volumes: reclaim policy
     * Delete, or every run leaves a released EBS volume behind.
     */
    scratchStorageClassName: pulumi.Input<string>;
    /** Scratch space for a restore: what it downloads plus the restored database in verify. */
    scratchSize: string;
}

/**
 * A job family's AWS identity: an IRSA role whose policy (built from the bucket's ARN and KMS key)
 * is `policy`, and the ServiceAccount its trust policy names. `names` are the two resources'
 * Pulumi names, kept as each component first registered them (a new name would replace them).
 */
export function bucketJobAccount(
    parent: pulumi.Resource, args: DatabaseJobsArgs, names: { role: string; serviceAccount: string },
    serviceAccountName: string, policy: (bucketArn: string, kmsKeyArn?: string) => string,
): { role: IrsaRole; serviceAccount: k8s.core.v1.ServiceAccount } {
    const role = new IrsaRole(names.role, {
        oidcProviderArn: args.oidcProviderArn,
        oidcIssuer: args.oidcIssuer,
        namespace: args.namespace,
        serviceAccountName,
        policy: pulumi.all([args.bucket.bucketArn, args.bucket.kmsKeyArn ?? pulumi.output(undefined)]).apply(([b, k]) => policy(b, k)),
    }, { parent });
    const serviceAccount = new k8s.core.v1.ServiceAccount(names.serviceAccount, {
        // Fixed: the IAM role's trust policy names exactly this ServiceAccount.
        metadata: { name: serviceAccountName, namespace: args.namespace, annotations: { "eks.amazonaws.com/role-arn": role.roleArn } },
        automountServiceAccountToken: false,
    }, { parent });
    return { role, serviceAccount };
}

export interface ScriptCronJobArgs {
    /** Fixed: the runbooks run `kubectl create job --from=cronjob/<name>`. Also the container's name. */
    cronName: string;
    namespace: pulumi.Input<string>;
    labels: Record<string, string>;
    schedule: string;
    timeZone: string;
    suspend: boolean;
    /** 0 where a retry could do harm or only repeats a failure; 1 where a transient error is likely. */
    backoffLimit: number;
    activeDeadlineSeconds: number;
    serviceAccountName: pulumi.Input<string>;
    image: string;
    awsCliImageTag: string;
    scriptsConfigMap: pulumi.Input<string>;
    scriptsMount: string;
    script: string;
    env: k8s.types.input.core.v1.EnvVar[];
    memory: string;
    volumes?: k8s.types.input.core.v1.Volume[];
    volumeMounts?: k8s.types.input.core.v1.VolumeMount[];
}

/** A CronJob that runs one of the platform's scripts in the server's image. */
export function scriptCronJob(resourceName: string, args: ScriptCronJobArgs, opts: pulumi.CustomResourceOptions): k8s.batch.v1.CronJob {
    return new k8s.batch.v1.CronJob(resourceName, {
        metadata: { name: args.cronName, namespace: args.namespace, labels: args.labels },
        spec: {
            schedule: args.schedule,
            timeZone: args.timeZone,
            suspend: args.suspend,
            // Two runs at once double the load and race each other (a manual run still can: the
            // scripts themselves never let one run touch another's objects).
            concurrencyPolicy: "Forbid",
            startingDeadlineSeconds: 3600,
            successfulJobsHistoryLimit: 3,
            failedJobsHistoryLimit: 5,
            jobTemplate: {
                metadata: { labels: args.labels },
                spec: {
                    backoffLimit: args.backoffLimit,
                    activeDeadlineSeconds: args.activeDeadlineSeconds,
                    ttlSecondsAfterFinished: 7 * 24 * 3600,
                    template: {
                        metadata: { labels: args.labels },
                        spec: {
                            serviceAccountName: args.serviceAccountName,
                            // No Kubernetes API token (the ServiceAccounts turn it off): the EKS pod
                            // identity webhook mounts the IRSA web identity token on its own.
                            restartPolicy: "Never",
                            securityContext: POD_SECURITY,
                            initContainers: [awsCliInitContainer(args.awsCliImageTag, "aws-cli")],
                            containers: [{
                                name: args.cronName,
                                image: args.image,
                                command: [`${args.scriptsMount}/${args.script}`],
                                env: args.env,
                                resources: { requests: { cpu: "250m", memory: args.memory }, limits: { memory: args.memory } },
                                securityContext: RESTRICTED,
                                volumeMounts: [
                                    { name: "scripts", mountPath: args.scriptsMount, readOnly: true },
                                    { name: "aws-cli", mountPath: AWS_CLI_DIR, readOnly: true },
                                    { name: "tmp", mountPath: "/tmp" },
                                    ...(args.volumeMounts ?? []),
                                ],
                            }],
                            volumes: [
                                { name: "scripts", configMap: { name: args.scriptsConfigMap, defaultMode: 0o555 } },
                                { name: "aws-cli", emptyDir: { sizeLimit: "512Mi" } },
                                { name: "tmp", emptyDir: { sizeLimit: "1Gi" } },
                                ...(args.volumes ?? []),
                            ],
                        },
                    },
                },
            },
        },
    }, opts);
}
