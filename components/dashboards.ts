import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as fs from "fs";
import * as path from "path";

const DIR = path.join(__dirname, "monitoring", "dashboards");

/** Label and value Grafana's dashboard sidecar (kube-prometheus-stack's default) watches for. */
export const GRAFANA_DASHBOARD_LABEL = { grafana_dashboard: "1" };

/** The dashboards this repository ships (components/monitoring/dashboards/<name>.json). */
export const DASHBOARDS = ["postgres", "backups", "mlflow"] as const;
export type DashboardName = (typeof DASHBOARDS)[number];

interface TemplateVariable {
    name: string;
    type: string;
    query: string;
    current?: { text: string; value: string };
    options?: { text: string; value: string; selected: boolean }[];
}

export interface Dashboard {
    uid: string;
    title: string;
    templating: { list: TemplateVariable[] };
    panels: { id: number; title: string; targets?: { refId: string; expr: string }[] }[];
    [key: string]: unknown;
}

/**
 * A dashboard with its constant variables (namespace, object names) set to this stack's values.
 * Every constant must be given, so a renamed namespace can never leave a dashboard looking at
 * the default one.
 */
export function dashboard(name: DashboardName, constants: Record<string, string>): Dashboard {
    const d = JSON.parse(fs.readFileSync(path.join(DIR, `${name}.json`), "utf8")) as Dashboard;
    const declared = d.templating.list.filter((v) => v.type === "constant").map((v) => v.name).sort();
    const given = Object.keys(constants).sort();
    if (JSON.stringify(declared) !== JSON.stringify(given)) {
        throw new Error(`dashboard ${name} has constants ${declared.join(", ")}; given ${given.join(", ")}`);
    }
    for (const v of d.templating.list) {
        if (v.type !== "constant") continue;
        const value = constants[v.name];
        v.query = value;
        v.current = { text: value, value };
        v.options = [{ text: value, value, selected: true }];
    }
    return d;
}

export interface DashboardsArgs {
    /** Where the ConfigMaps live: the namespace Grafana's sidecar searches. */
    namespace: pulumi.Input<string>;
    postgresNamespace: pulumi.Input<string>;
    postgresStatefulSet: pulumi.Input<string>;
    /** The backup, restore-verify and restore CronJobs (in the database's namespace). */
    cronJobs: pulumi.Input<string>[];
    mlflowNamespace: pulumi.Input<string>;
    mlflowDeployment: string;
}

/** One ConfigMap per dashboard, labelled for Grafana's sidecar, which loads it without a restart. */
export class Dashboards extends pulumi.ComponentResource {
    constructor(name: string, args: DashboardsArgs, opts?: pulumi.ComponentResourceOptions) {
        super("platform:index:Dashboards", name, {}, opts);
        const constants = pulumi.all([args.postgresNamespace, args.postgresStatefulSet, pulumi.all(args.cronJobs), args.mlflowNamespace])
            .apply(([pg, sts, cronJobs, ml]): Record<DashboardName, Record<string, string>> => ({
                // The StatefulSet's claim template is "data": its claims are data-<pod>.
                postgres: { namespace: pg, pvc: `data-${sts}-[0-9]+` },
                backups: { namespace: pg, cronjobs: cronJobs.join("|") },
                mlflow: { namespace: ml, deployment: args.mlflowDeployment },
            }));
        for (const name_ of DASHBOARDS) {
            const d = constants.apply((c) => dashboard(name_, c[name_]));
            new k8s.core.v1.ConfigMap(`${name}-${name_}`, {
                metadata: { namespace: args.namespace, labels: GRAFANA_DASHBOARD_LABEL },
                data: { [`platform-${name_}.json`]: d.apply((x) => JSON.stringify(x, null, 2) + "\n") },
            }, { parent: this });
        }
        this.registerOutputs({});
    }
}
