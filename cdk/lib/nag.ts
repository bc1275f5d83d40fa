// cdk-nag findings that are understood: each is acknowledged on the resource it concerns, with the reason.
import { Validations } from "aws-cdk-lib";
import type { IConstruct } from "constructs";

export function acknowledge(scope: IConstruct, id: string, reason: string) {
  Validations.of(scope).acknowledge({ id, reason });
}
