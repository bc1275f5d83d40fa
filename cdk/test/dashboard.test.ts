import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { synth } from "./support.ts";

/** The metrics the functions emit (the Rust catalogue as JSON; a Rust test keeps the file equal to it). */
const catalogue = JSON.parse(readFileSync(new URL("../lib/emitted-metrics.json", import.meta.url), "utf8")) as {
  namespace: string;
  metrics: { name: string; dimension: { name: string; values: string[] } | null }[];
};

/** The dashboard body with CloudFormation's tokens (region, account) replaced by placeholders, parsed. */
function dashboardBody(): { widgets: { type: string; properties: { title: string; metrics?: unknown[][] } }[] } {
  const { template } = synth();
  const dashboards = Object.values(template.findResources("AWS::CloudWatch::Dashboard"));
  assert.equal(dashboards.length, 1, "one dashboard");
  const body = dashboards[0].Properties.DashboardBody as unknown;
  const text =
    typeof body === "string" ? body : (body as { "Fn::Join": [string, unknown[]] })["Fn::Join"][1].map((p) => (typeof p === "string" ? p : "TOKEN")).join("");
  return JSON.parse(text);
}

test("the dashboard's widgets name only metrics the functions emit, with dimensions and values they emit, and show every one", () => {
  const widgets = dashboardBody().widgets.filter((w) => w.type === "metric");
  assert.ok(widgets.length >= 5, `${widgets.length} metric widgets`);
  const shown = new Set<string>();
  for (const widget of widgets) {
    for (const row of widget.properties.metrics ?? []) {
      // [namespace, name, (dimension name, value)*, {options}]
      const parts = row.filter((p) => typeof p === "string") as string[];
      const [namespace, name, ...dimensions] = parts;
      const where = `${widget.properties.title}: ${JSON.stringify(row)}`;
      assert.equal(namespace, catalogue.namespace, where);
      const emitted = catalogue.metrics.find((m) => m.name === name);
      assert.ok(emitted !== undefined, `${where}: ${name} is not a metric the code emits`);
      if (emitted.dimension === null) {
        assert.deepEqual(dimensions, [], `${where}: emitted without dimensions`);
      } else {
        assert.equal(dimensions.length, 2, `${where}: emitted with the ${emitted.dimension.name} dimension`);
        assert.equal(dimensions[0], emitted.dimension.name, where);
        assert.ok(emitted.dimension.values.includes(dimensions[1]), `${where}: ${dimensions[1]} is never emitted`);
      }
      shown.add(name);
    }
  }
  const missing = catalogue.metrics.map((m) => m.name).filter((n) => !shown.has(n));
  assert.deepEqual(missing, [], "every emitted metric is on the dashboard");
  const titles = widgets.map((w) => w.properties.title);
  for (const wanted of ["Runs and proposals per day", "Approvals by decision per day", "Actions by outcome per day", "Estimated vs realized savings per month (USD)"]) {
    assert.ok(titles.includes(wanted), wanted);
  }
});

test("emitting the metrics needs no permission: no function may call cloudwatch:PutMetricData", () => {
  const { template } = synth();
  const policies = JSON.stringify(template.findResources("AWS::IAM::Policy"));
  assert.ok(!policies.includes("cloudwatch:PutMetricData"));
});
