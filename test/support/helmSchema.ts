// Checks Helm values the way `helm install` does: the chart's values.yaml defaults coalesced with
// ours (maps merge, everything else replaces), then validated against values.schema.json.
import Ajv from "ajv";
import * as fs from "fs";
import * as path from "path";
import YAML from "yaml";

type Values = Record<string, unknown>;

export function coalesce(defaults: Values, overrides: Values): Values {
    const out: Values = { ...defaults };
    for (const [k, v] of Object.entries(overrides)) {
        const d = defaults[k];
        if (v === null) delete out[k];
        else if (isMap(v) && isMap(d)) out[k] = coalesce(d, v);
        else out[k] = v;
    }
    return out;
}

function isMap(v: unknown): v is Values {
    return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The chart directory (values.yaml + values.schema.json), from MLFLOW_CHART_DIR, if there is one. */
export function chartDir(): string | undefined {
    const dir = process.env.MLFLOW_CHART_DIR;
    if (!dir) return undefined;
    for (const f of ["values.yaml", "values.schema.json"]) {
        if (!fs.existsSync(path.join(dir, f))) throw new Error(`MLFLOW_CHART_DIR=${dir} has no ${f}`);
    }
    return dir;
}

/** Returns the schema errors of our values merged over the chart's defaults (empty when valid). */
export function helmSchemaErrors(dir: string, values: Values): string[] {
    const defaults = YAML.parse(fs.readFileSync(path.join(dir, "values.yaml"), "utf8")) as Values;
    const schema = JSON.parse(fs.readFileSync(path.join(dir, "values.schema.json"), "utf8")) as object;
    const ajv = new Ajv({ strict: false, allErrors: true });
    const validate = ajv.compile(schema);
    if (validate(coalesce(defaults, values))) return [];
    return (validate.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message} ${JSON.stringify(e.params)}`);
}
