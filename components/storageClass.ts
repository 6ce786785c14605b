import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";

export interface StorageClassArgs {
    /** Fixed name: volume claims refer to it. EKS's own in-tree class is already called gp2. */
    className: string;
    /** EBS volume type (gp2 by default). */
    volumeType: string;
    /** Delete in dev; Retain in prod, so a deleted claim never takes its data with it. */
    reclaimPolicy: "Delete" | "Retain";
    /** Whether claims without a storageClassName land here. */
    isDefault: boolean;
    /** Customer-managed KMS key for the volumes; the account's default EBS key otherwise. */
    kmsKeyArn?: string;
}

/**
 * Marks the scratch class: the policy pack's production-data-retained rule lets a class carrying it
 * delete its volumes in prod (statefulset-claims-on-platform-storage-class keeps it off StatefulSets).
 */
export const EPHEMERAL_ONLY_LABEL = "platform/ephemeral-volumes-only";

/** Name of the scratch class beside a platform class: volumes that live and die with one pod. */
export function scratchClassName(className: string): string {
    return `${className}-scratch`;
}

/**
 * Two encrypted EBS StorageClasses on the CSI driver: the platform's, expandable, for data (Retain
 * in prod), and a scratch one that is always Delete, for ephemeral volumes (restore and verify
 * jobs). An ephemeral claim is deleted with its pod, but under Retain its EBS volume would stay,
 * released and billed, after every run.
 */
export class StorageClass extends pulumi.ComponentResource {
    public readonly className: pulumi.Output<string>;
    /** Reclaim policy Delete, whatever the platform class's policy: for ephemeral volumes only. */
    public readonly scratchClassName: pulumi.Output<string>;

    constructor(name: string, args: StorageClassArgs, opts?: pulumi.ComponentResourceOptions) {
        super("platform:index:StorageClass", name, {}, opts);

        const parameters: Record<string, string> = {
            type: args.volumeType,
            encrypted: "true",
            "csi.storage.k8s.io/fstype": "ext4",
        };
        if (args.kmsKeyArn !== undefined) parameters.kmsKeyId = args.kmsKeyArn;

        const sc = new k8s.storage.v1.StorageClass(`${name}-class`, {
            metadata: {
                name: args.className,
                annotations: { "storageclass.kubernetes.io/is-default-class": String(args.isDefault) },
            },
            // The in-tree kubernetes.io/aws-ebs provisioner no longer provisions on current EKS.
            provisioner: "ebs.csi.aws.com",
            parameters,
            reclaimPolicy: args.reclaimPolicy,
            // Create the volume in the zone the pod is scheduled to, not a random one.
            volumeBindingMode: "WaitForFirstConsumer",
            allowVolumeExpansion: true,
        }, { parent: this });

        const scratch = new k8s.storage.v1.StorageClass(`${name}-scratch`, {
            metadata: {
                name: scratchClassName(args.className),
                labels: { [EPHEMERAL_ONLY_LABEL]: "true" },
                annotations: { "storageclass.kubernetes.io/is-default-class": "false" },
            },
            provisioner: "ebs.csi.aws.com",
            parameters,
            reclaimPolicy: "Delete",
            volumeBindingMode: "WaitForFirstConsumer",
            // An ephemeral claim is sized once by its pod template; nothing ever grows it.
            allowVolumeExpansion: false,
        }, { parent: this });

        this.className = sc.metadata.name;
        this.scratchClassName = scratch.metadata.name;
        this.registerOutputs({ className: this.className, scratchClassName: this.scratchClassName });
    }
}
