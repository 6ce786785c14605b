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

/** An encrypted, expandable EBS StorageClass on the CSI driver. */
export class StorageClass extends pulumi.ComponentResource {
    public readonly className: pulumi.Output<string>;

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

        this.className = sc.metadata.name;
        this.registerOutputs({ className: this.className });
    }
}
