#!/usr/bin/env node
// The CDK app: one stack, configured by context (cdk.json defaults, `-c key=value` overrides).
import { App, Validations } from "aws-cdk-lib";
import { AwsSolutionsChecks } from "cdk-nag";
import { readConfig } from "../lib/config.ts";
import { FinopsStack } from "../lib/finops-stack.ts";

const app = new App();
const config = readConfig((key) => app.node.tryGetContext(key));
new FinopsStack(app, "FinopsAgent", { config, description: "finops-agent: finds idle EC2 instances, asks a human, snapshots then stops" });
Validations.of(app).addPlugins(new AwsSolutionsChecks());
