// Refreshes the committed render snapshots (test/snapshots/<stack>) that the snapshot tests
// compare, and the README's table of resource counts.
import * as fs from "fs";
import * as path from "path";
import { Evaluation, evaluateStack, withOperatorSettings } from "./evaluate";
import { countsTable, render, withCounts, writeRender } from "./render";

const STACKS = ["dev", "prod"];

(async () => {
    const evs: Evaluation[] = [];
    for (const stack of STACKS) {
        const ev = await evaluateStack(stack, withOperatorSettings(stack));
        evs.push(ev);
        writeRender(render(ev), path.join(__dirname, "..", "test", "snapshots", stack));
        process.stdout.write(`updated test/snapshots/${stack}\n`);
    }
    const readme = path.join(__dirname, "..", "README.md");
    fs.writeFileSync(readme, withCounts(fs.readFileSync(readme, "utf8"), countsTable(evs)));
    process.stdout.write("updated the resource counts in README.md\n");
})().catch((err: Error) => {
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
});
