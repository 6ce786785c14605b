import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

export interface NetworkArgs {
    /** IPv4 CIDR of the VPC, /16 to /20. */
    cidrBlock: string;
    /** How many availability zones to spread subnets over (2 or 3). */
    availabilityZoneCount: number;
    /**
     * Zones pinned in config. Without them the zones come from the region's list at deploy time,
     * and a change in what AWS reports as available would move (replace) subnets: a subnet's
     * availabilityZone forces replacement (ForceNew in terraform-provider-aws
     * internal/service/ec2/vpc_subnet.go).
     */
    availabilityZones?: string[];
    /** "single": one NAT gateway for all private subnets (cheap); "perAz": one per zone (survives a zone outage). */
    natGateways: "single" | "perAz";
    /** EKS cluster name, for the subnet tags the AWS load balancer integrations look for. */
    clusterName: string;
}

/**
 * Splits an IPv4 CIDR like Terraform's cidrsubnet(): `newBits` more prefix bits, the `index`-th block.
 */
export function cidrSubnet(cidr: string, newBits: number, index: number): string {
    const [base, prefixText] = cidr.split("/");
    const prefix = Number(prefixText) + newBits;
    if (prefix > 28 || index >= 2 ** newBits) throw new Error(`cannot take block ${index} of /${prefix} from ${cidr}`);
    const start = base.split(".").reduce((a, o) => a * 256 + Number(o), 0) + index * 2 ** (32 - prefix);
    const octets = [24, 16, 8, 0].map((shift) => Math.floor(start / 2 ** shift) % 256);
    return `${octets.join(".")}/${prefix}`;
}

/**
 * A VPC for one EKS cluster: public subnets for internet-facing load balancers and NAT, private
 * subnets (the larger blocks: the VPC CNI gives every pod a VPC address) for nodes and internal
 * load balancers.
 */
export class Network extends pulumi.ComponentResource {
    public readonly vpcId: pulumi.Output<string>;
    public readonly publicSubnetIds: pulumi.Output<string>[];
    /** Where internet-facing load balancers put their nodes (no pod or node lives there). */
    public readonly publicSubnetCidrs: pulumi.Output<string>[];
    public readonly privateSubnetIds: pulumi.Output<string>[];
    /** The zone of each private subnet, by index. */
    public readonly availabilityZones: pulumi.Output<string>[];

    constructor(name: string, args: NetworkArgs, opts?: pulumi.ComponentResourceOptions) {
        super("platform:index:Network", name, {}, opts);

        // Only zones that need no opt-in, and only real availability zones: a Local Zone or
        // Wavelength Zone offers few instance types and no EKS control-plane ENIs.
        const zones = args.availabilityZones !== undefined ? undefined : aws.getAvailabilityZonesOutput({
            state: "available",
            filters: [
                { name: "opt-in-status", values: ["opt-in-not-required"] },
                { name: "zone-type", values: ["availability-zone"] },
            ],
        }, { parent: this });
        const vpc = new aws.ec2.Vpc(`${name}-vpc`, {
            cidrBlock: args.cidrBlock,
            enableDnsHostnames: true,
            enableDnsSupport: true,
            tags: { Name: `${name}-vpc` },
        }, { parent: this });
        const igw = new aws.ec2.InternetGateway(`${name}-igw`, { vpcId: vpc.id, tags: { Name: `${name}-igw` } }, { parent: this });

        const publicRoutes = new aws.ec2.RouteTable(`${name}-public`, {
            vpcId: vpc.id,
            routes: [{ cidrBlock: "0.0.0.0/0", gatewayId: igw.id }],
            tags: { Name: `${name}-public` },
        }, { parent: this });

        const clusterTag = `kubernetes.io/cluster/${args.clusterName}`;
        const publicSubnets: aws.ec2.Subnet[] = [];
        const privateSubnets: aws.ec2.Subnet[] = [];
        const natGateways: aws.ec2.NatGateway[] = [];
        const subnetZones: pulumi.Output<string>[] = [];
        for (let i = 0; i < args.availabilityZoneCount; i++) {
            const az = zones === undefined ? pulumi.output(args.availabilityZones![i]) : zones.names.apply((names) => {
                if (names.length <= i) throw new Error(`the region has ${names.length} available zones; cluster.availabilityZoneCount asks for ${args.availabilityZoneCount}`);
                return names[i];
            });
            subnetZones.push(az);
            // Private: /19s from the start of a /16; public: small /22s from the last /19.
            const pub = new aws.ec2.Subnet(`${name}-public-${i}`, {
                vpcId: vpc.id,
                availabilityZone: az,
                cidrBlock: cidrSubnet(args.cidrBlock, 6, 56 + i),
                mapPublicIpOnLaunch: false,
                tags: { Name: `${name}-public-${i}`, "kubernetes.io/role/elb": "1", [clusterTag]: "shared" },
            }, { parent: this });
            new aws.ec2.RouteTableAssociation(`${name}-public-${i}`, { subnetId: pub.id, routeTableId: publicRoutes.id }, { parent: this });
            publicSubnets.push(pub);

            if (args.natGateways === "perAz" || i === 0) {
                const eip = new aws.ec2.Eip(`${name}-nat-${i}`, { domain: "vpc", tags: { Name: `${name}-nat-${i}` } }, { parent: this });
                natGateways.push(new aws.ec2.NatGateway(`${name}-nat-${i}`, {
                    subnetId: pub.id,
                    allocationId: eip.id,
                    tags: { Name: `${name}-nat-${i}` },
                }, { parent: this, dependsOn: [igw] }));
            }

            const priv = new aws.ec2.Subnet(`${name}-private-${i}`, {
                vpcId: vpc.id,
                availabilityZone: az,
                cidrBlock: cidrSubnet(args.cidrBlock, 3, i),
                mapPublicIpOnLaunch: false,
                tags: { Name: `${name}-private-${i}`, "kubernetes.io/role/internal-elb": "1", [clusterTag]: "shared" },
            }, { parent: this });
            const privateRoutes = new aws.ec2.RouteTable(`${name}-private-${i}`, {
                vpcId: vpc.id,
                routes: [{ cidrBlock: "0.0.0.0/0", natGatewayId: natGateways[natGateways.length - 1].id }],
                tags: { Name: `${name}-private-${i}` },
            }, { parent: this });
            new aws.ec2.RouteTableAssociation(`${name}-private-${i}`, { subnetId: priv.id, routeTableId: privateRoutes.id }, { parent: this });
            privateSubnets.push(priv);
        }

        this.vpcId = vpc.id;
        this.publicSubnetIds = publicSubnets.map((s) => s.id);
        this.publicSubnetCidrs = publicSubnets.map((s) => s.cidrBlock);
        this.privateSubnetIds = privateSubnets.map((s) => s.id);
        this.availabilityZones = subnetZones;
        this.registerOutputs({ vpcId: this.vpcId, publicSubnetIds: this.publicSubnetIds, privateSubnetIds: this.privateSubnetIds });
    }
}
