"""Starts a real moto server for the finops tests and the demo, on 127.0.0.1.

Usage: python launcher.py PORT

Plain `moto_server`, with these additions (transport, lifecycle, seeding, and one place where moto allows what AWS refuses):

- Smithy RPCv2 CBOR. aws-sdk-cloudwatch speaks the `rpc-v2-cbor` protocol (POST /service/<Service>/operation/<Op>,
  CBOR bodies). moto 5.2.5 serves CloudWatch over the query and JSON protocols only and answers 404 there, so this
  adapter turns such a request into the equivalent JSON-protocol request (X-Amz-Target, JSON body), lets moto
  handle it, and encodes moto's answer back to CBOR, converting timestamps by botocore's model of the operation.
- DynamoDB requests are handled one at a time. moto checks a ConditionExpression and then writes without a lock, so
  two concurrent conditional writes to one item could both succeed (3 races in 300 did, measured), where DynamoDB
  makes each single-item write atomic. The approval record's single use rests on that atomicity.
- STS AssumeRole refuses a role that does not exist in the target account (AccessDenied, as STS does); moto would
  hand out credentials for any ARN. OrganizationAccountAccessRole, which Organizations creates in the accounts it
  creates, is taken as always there.
- It exits when its standard input closes, so a test binary that dies never leaves an orphaned server behind.
- Instances launched with the tag `finops-test:launched-days-ago=N` get a LaunchTime N days in the past. Real fleets
  are old; EC2 has no API to set LaunchTime, and every moto instance would otherwise be brand new, which the idle
  criteria rightly treat as "insufficient data". The tag is only read here, by the emulator's seeding hook.
- Volumes, NAT gateways and load balancers created with the tag `finops-test:created-days-ago=N` get a CreateTime N days in the
  past, for the same reason (an unattached volume or an idle gateway is judged over the lookback).
- Instances tagged `finops-test:stopped-days-ago=N`, once stopped, say in StateTransitionReason that they were
  stopped N days ago.
"""

import datetime
import io
import json
import os
import re
import sys
import threading

import botocore.session
import cbor2
from moto.ec2.models.elastic_block_store import Volume
from moto.ec2.models.instances import Instance, InstanceBackend
from moto.ec2.models.nat_gateways import NatGateway
from moto.core.utils import iso_8601_datetime_with_milliseconds
from moto.elbv2.models import ELBv2Backend
from moto.iam.models import iam_backends
from moto.sts.exceptions import STSClientError
from moto.sts.models import STSBackend
from moto.utilities.utils import get_partition
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple

BACKDATE_TAG = "finops-test:launched-days-ago"

# --- seeding hook: backdated launch times -------------------------------------------------------------------------

_run_instances = InstanceBackend.run_instances


def _run_instances_backdated(self, *args, **kwargs):
    reservation = _run_instances(self, *args, **kwargs)
    for instance in reservation.instances:
        tags = {t["key"]: t["value"] for t in self.describe_tags(filters={"resource-id": [instance.id]})}
        days = tags.get(BACKDATE_TAG)
        if days is not None:
            instance.launch_time = instance.launch_time - datetime.timedelta(days=float(days))
    return reservation


InstanceBackend.run_instances = _run_instances_backdated

VOLUME_BACKDATE_TAG = "finops-test:created-days-ago"
_volume_add_tags = Volume.add_tags


def _volume_add_tags_backdated(self, tag_map):
    _volume_add_tags(self, tag_map)
    days = tag_map.get(VOLUME_BACKDATE_TAG)
    if days is not None:
        self.create_time = self.create_time - datetime.timedelta(days=float(days))


Volume.add_tags = _volume_add_tags_backdated

# NAT gateways take the same tag (an idle gateway is judged over the lookback).
_nat_add_tags = NatGateway.add_tags


def _nat_add_tags_backdated(self, tag_map):
    _nat_add_tags(self, tag_map)
    days = tag_map.get(VOLUME_BACKDATE_TAG)
    if days is not None:
        self._created_at = self._created_at - datetime.timedelta(days=float(days))


NatGateway.add_tags = _nat_add_tags_backdated

# Load balancers too (ELBv2 tags arrive with CreateLoadBalancer).
_create_load_balancer = ELBv2Backend.create_load_balancer


def _create_load_balancer_backdated(self, *args, **kwargs):
    lb = _create_load_balancer(self, *args, **kwargs)
    days = self.tagging_service.get_tag_dict_for_resource(lb.arn).get(VOLUME_BACKDATE_TAG)
    if days is not None:
        created = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=float(days))
        lb.created_time = iso_8601_datetime_with_milliseconds(created.replace(tzinfo=None))
    return lb


ELBv2Backend.create_load_balancer = _create_load_balancer_backdated

# Instances tagged `finops-test:stopped-days-ago=N` say, once stopped, that they were stopped N days ago (EC2 says
# when in StateTransitionReason; a stopped instance's volumes are judged by how long it has been stopped).
STOPPED_BACKDATE_TAG = "finops-test:stopped-days-ago"
_instance_stop = Instance.stop


def _instance_stop_backdated(self):
    state = _instance_stop(self)
    tags = {t["key"]: t["value"] for t in self.ec2_backend.describe_tags(filters={"resource-id": [self.id]})}
    days = tags.get(STOPPED_BACKDATE_TAG)
    if days is not None:
        when = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=float(days))
        self._reason = f"User initiated ({when.strftime('%Y-%m-%d %H:%M:%S UTC')})"
    return state


Instance.stop = _instance_stop_backdated

# --- STS: a role must exist to be assumed --------------------------------------------------------------------------

# moto lets anyone assume any role ARN, existing or not (which is how it switches accounts). Real STS refuses a role
# that does not exist (or does not trust the caller) with AccessDenied, and an organization fan-out must report such
# an account rather than scan it with someone else's credentials. Organizations creates
# OrganizationAccountAccessRole in every account it creates, so that one is always there, as in AWS.
ORGANIZATION_ACCESS_ROLE = "OrganizationAccountAccessRole"
_assume_role = STSBackend.assume_role


class AssumeRoleAccessDenied(STSClientError):
    code = "AccessDenied"


def _assume_existing_role(self, region_name, role_session_name, role_arn, *args, **kwargs):
    match = re.match(r"^arn:aws[a-z-]*:iam::([0-9]{12}):role/(?:.*/)?([^/]+)$", role_arn or "")
    if match and match.group(2) != ORGANIZATION_ACCESS_ROLE:
        account_id, role_name = match.groups()
        roles = iam_backends[account_id][get_partition(region_name)].roles.values()
        if not any(role.name == role_name for role in roles):
            raise AssumeRoleAccessDenied(
                f"User: arn:aws:iam::{self.account_id}:user/moto is not authorized to perform: sts:AssumeRole "
                f"on resource: {role_arn}"
            )
    return _assume_role(self, region_name, role_session_name, role_arn, *args, **kwargs)


STSBackend.assume_role = _assume_existing_role

# --- Smithy RPCv2 CBOR adapter ------------------------------------------------------------------------------------

# The Smithy service name in the URL -> botocore service name (for the operation's output shape).
RPCV2_SERVICES = {"GraniteServiceVersion20100801": "cloudwatch"}
_models = {}
_session = botocore.session.get_session()


def _operation_model(service, operation):
    if service not in _models:
        _models[service] = _session.get_service_model(service)
    try:
        return _models[service].operation_model(operation)
    except Exception:
        return None


def _to_json_value(value):
    """CBOR request values -> JSON-protocol values (timestamps become epoch seconds, bytes are not used here)."""
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    if isinstance(value, dict):
        return {k: _to_json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_json_value(v) for v in value]
    return value


def _to_cbor_value(value, shape):
    """JSON-protocol response values -> CBOR values, timestamps as datetimes (encoded as CBOR tag 1)."""
    if shape is None or value is None:
        return value
    if shape.type_name == "timestamp":
        if isinstance(value, (int, float)):
            return datetime.datetime.fromtimestamp(value, tz=datetime.timezone.utc)
        if isinstance(value, str):
            return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return value
    if shape.type_name == "structure" and isinstance(value, dict):
        return {k: _to_cbor_value(v, shape.members.get(k)) for k, v in value.items()}
    if shape.type_name == "list" and isinstance(value, list):
        return [_to_cbor_value(v, shape.member) for v in value]
    if shape.type_name == "map" and isinstance(value, dict):
        return {k: _to_cbor_value(v, shape.value) for k, v in value.items()}
    if shape.type_name in ("double", "float") and isinstance(value, int):
        return float(value)
    return value


class RpcV2CborAdapter:
    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        parts = path.strip("/").split("/")
        if environ.get("REQUEST_METHOD") != "POST" or len(parts) != 4 or parts[0] != "service" or parts[2] != "operation":
            return self.app(environ, start_response)
        smithy_service, operation = parts[1], parts[3]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        request = cbor2.loads(raw) if raw else {}
        body = json.dumps(_to_json_value(request)).encode()
        inner = dict(environ)
        inner.update(
            {
                "PATH_INFO": "/",
                "CONTENT_TYPE": "application/x-amz-json-1.0",
                "CONTENT_LENGTH": str(len(body)),
                "HTTP_X_AMZ_TARGET": f"{smithy_service}.{operation}",
                "wsgi.input": io.BytesIO(body),
            }
        )
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        chunks = self.app(inner, capture)
        try:
            payload = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        status = captured["status"]
        document = json.loads(payload) if payload.strip() else {}
        if status.startswith("2"):
            model = _operation_model(RPCV2_SERVICES.get(smithy_service, ""), operation)
            document = _to_cbor_value(document, model.output_shape if model else None)
        else:
            error_type = document.get("__type", "InternalFailure") if isinstance(document, dict) else "InternalFailure"
            message = document.get("message") or document.get("Message") if isinstance(document, dict) else str(document)
            document = {"__type": error_type.split("#")[-1], "message": message or ""}
        encoded = cbor2.dumps(document, datetime_as_timestamp=True, timezone=datetime.timezone.utc)
        headers = [
            ("Content-Type", "application/cbor"),
            ("smithy-protocol", "rpc-v2-cbor"),
            ("Content-Length", str(len(encoded))),
        ]
        start_response(status, headers)
        return [encoded]


# --- DynamoDB: atomic single-item writes, as in DynamoDB ----------------------------------------------------------


class SerialDynamoDb:
    """Runs DynamoDB requests one at a time (the whole answer is produced under the lock)."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            return self.app(environ, start_response)
        with self.lock:
            return list(self.app(environ, start_response))


# --- lifecycle ----------------------------------------------------------------------------------------------------


def _exit_when_parent_goes():
    try:
        sys.stdin.read()
    finally:
        os._exit(0)


def main():
    port = int(sys.argv[1])
    os.environ.setdefault("MOTO_PORT", str(port))
    if not sys.stdin.isatty():
        threading.Thread(target=_exit_when_parent_goes, daemon=True).start()
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        "127.0.0.1",
        port,
        SerialDynamoDb(RpcV2CborAdapter(app)),
        threaded=True,
        use_reloader=False,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
