// Files that ship with the program: the scripts its pods run, read from the repository, so the pods
// get exactly the files the real tests execute.
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";

/** Every `*.sh` in a directory, by file name, in a stable order (ConfigMap data). */
export function shellScripts(dir: string): Record<string, string> {
    const files = fs.readdirSync(dir).filter((f) => f.endsWith(".sh")).sort();
    return Object.fromEntries(files.map((f) => [f, fs.readFileSync(path.join(dir, f), "utf8")]));
}

/** Hex SHA-256: a digest of what a pod runs, so a change to it rolls or reruns the pod. */
export function sha256(text: string): string {
    return crypto.createHash("sha256").update(text).digest("hex");
}
