// Validates custom resources against their CustomResourceDefinition's openAPIV3Schema (the CRDs of
// kube-prometheus-stack 88.5.3 under KPS_CHART_DIR/crds), the way `kubectl apply --validate=strict`
// judges them: unknown fields are errors (the API server would silently prune them).
import Ajv, { type ValidateFunction } from "ajv";
import * as fs from "fs";
import * as path from "path";
import YAML from "yaml";

/** The chart directory (values.yaml + crds/), from KPS_CHART_DIR, if there is one. */
export function kpsChartDir(): string | undefined {
    const dir = process.env.KPS_CHART_DIR;
    if (!dir) return undefined;
    for (const f of ["values.yaml", "Chart.yaml", "crds"]) {
        if (!fs.existsSync(path.join(dir, f))) throw new Error(`KPS_CHART_DIR=${dir} has no ${f}`);
    }
    return dir;
}

type Schema = Record<string, unknown>;

/** Object schemas with declared properties get additionalProperties: false, unless they preserve unknown fields. */
function strict(schema: unknown): unknown {
    if (Array.isArray(schema)) return schema.map(strict);
    if (schema === null || typeof schema !== "object") return schema;
    const s = Object.fromEntries(Object.entries(schema as Schema).map(([k, v]) => [k, k === "properties" ? Object.fromEntries(Object.entries(v as Schema).map(([p, ps]) => [p, strict(ps)])) : strict(v)])) as Schema;
    if (s.properties && s.additionalProperties === undefined && !s["x-kubernetes-preserve-unknown-fields"]) s.additionalProperties = false;
    return s;
}

/**
 * Some CRD patterns are Go regular expressions with a leading inline flag, e.g. `^(?i)(abort|warn)?$`,
 * which JavaScript refuses: the flag becomes the RegExp's `i` flag.
 */
function goRegExp(pattern: string, flags: string): RegExp {
    const m = /^(\^?)\(\?i\)(.*)$/.exec(pattern);
    return m ? new RegExp(`${m[1]}${m[2]}`, `${flags}i`) : new RegExp(pattern, flags);
}

const cache = new Map<string, ValidateFunction>();

/** Schema errors of a custom resource (empty when valid). */
export function crdErrors(dir: string, obj: { apiVersion: string; kind: string }): string[] {
    const [group, version] = obj.apiVersion.split("/");
    const file = path.join(dir, "crds", `crd-${obj.kind.toLowerCase()}s.yaml`);
    let validate = cache.get(file);
    if (!validate) {
        const crd = YAML.parse(fs.readFileSync(file, "utf8"));
        if (crd.spec.group !== group) throw new Error(`${file} defines group ${crd.spec.group}, not ${group}`);
        const v = crd.spec.versions.find((x: { name: string }) => x.name === version);
        if (!v) throw new Error(`${file} has no version ${version}`);
        const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false, code: { regExp: goRegExp as never } });
        validate = ajv.compile(strict(v.schema.openAPIV3Schema) as object);
        cache.set(file, validate);
    }
    if (validate(obj)) return [];
    return (validate.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message} ${JSON.stringify(e.params)}`);
}
