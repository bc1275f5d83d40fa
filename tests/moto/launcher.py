"""Starts a real moto server for the finops tests and the demo, on 127.0.0.1.

Usage: python launcher.py PORT [PORT_FILE]

PORT 0 lets the kernel choose a free port, written to PORT_FILE once the server listens: a port found free by the
caller and bound later by this process could be taken in between (two chaos workers once got the same one and shared
a moto, each resetting the other's state).

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
- EC2's image catalogue is moto's default list only (see `_default_amis_only`).
- CreateVolume with a ClientToken it has seen answers with the volume that token made, as EC2 documents (moto makes
  another one).
- Shortcuts that answer exactly as moto does, for CPU (measured with py-spy under four chaos workers, where moto
  is most of the machine's CPU): a state machine definition's ANTLR parse tree is kept by its text (moto parses the
  same definition at create, update and every execution start: 21 % of moto's busy time; the evaluation components
  are still built fresh from it each time, since they hold an execution's state); an EC2 resource's tags are read
  from its own entry (moto scanned every tag of every resource, compiling a regex, for each resource it described:
  11 %); the list of moto's service modules is read from disk once, not on every request (5 %); a definition
  validated once is not validated again; a JSONPath is parsed once. The kept trees, definitions and paths outlive
  `/moto-api/reset` and are not bounded: a test run has a handful of definitions. No request line is logged per
  request either (nothing reads moto's log).
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


def _default_amis_only():
    # EC2's image catalogue: moto's own default list (44 images), not also the 1,214 ECS-optimized and the latest
    # images of each region, which moto builds into objects again after every reset (10 % of its busy time under
    # the chaos workers). MOTO_AMIS_PATH is moto's setting for that; nothing here asks for an ECS image.
    if "MOTO_AMIS_PATH" in os.environ:
        return
    import gzip
    import importlib.metadata
    import importlib.resources
    import tempfile

    path = os.path.join(tempfile.gettempdir(), f"finops-moto-{importlib.metadata.version('moto')}-amis.json")
    if not os.path.exists(path):
        data = gzip.decompress((importlib.resources.files("moto") / "ec2/resources/amis.json.gz").read_bytes())
        with open(f"{path}.{os.getpid()}", "wb") as f:
            f.write(data)
        os.replace(f"{path}.{os.getpid()}", path)
    os.environ["MOTO_AMIS_PATH"] = path


_default_amis_only()
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
from werkzeug.serving import make_server

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

# --- CreateVolume's ClientToken ----------------------------------------------------------------------------------
# EC2 makes CreateVolume idempotent by its ClientToken: a second call with the same token answers with the volume the
# first made. moto ignores the token and makes another volume, so an undo whose CreateVolume answer was lost (the SDK
# retries it, with the undo's id as the token) recreated a volume twice under the chaos faults.

from moto.core.responses import ActionResult
from moto.ec2.responses.elastic_block_store import ElasticBlockStore

_create_volume = ElasticBlockStore.create_volume
_volume_tokens_lock = threading.Lock()


def _create_volume_once_per_token(self):
    token = self._get_param("ClientToken")
    if not token:
        return _create_volume(self)
    backend = self.ec2_backend
    with _volume_tokens_lock:
        # Kept on the backend, so /moto-api/reset forgets them with the volumes.
        made = backend.__dict__.setdefault("_finops_volume_tokens", {})
        if made.get(token) in backend.volumes:
            return ActionResult(backend.volumes[made[token]])
        result = _create_volume(self)
        made[token] = result.result.id
        return result


ElasticBlockStore.create_volume = _create_volume_once_per_token

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


# --- CPU shortcuts, each answering exactly as moto does (see the module's docstring) --------------------------------


def _install_cpu_shortcuts():
    import functools

    from antlr4 import CommonTokenStream, InputStream
    from moto import backends
    from moto.ec2.models.core import TaggedEC2Resource
    from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix
    from moto.stepfunctions.parser.asl.antlr.runtime.ASLLexer import ASLLexer
    from moto.stepfunctions.parser.asl.antlr.runtime.ASLParser import ASLParser
    from moto.stepfunctions.parser.asl.parse import asl_parser
    from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

    trees = {}
    trees_lock = threading.Lock()

    def parse(definition):
        # moto's own parse, with the syntax tree kept by the definition's text; a definition with syntax errors is
        # never kept (it raises, as before). The Preprocessor builds new components from the (unchanged) tree.
        with trees_lock:
            tree = trees.get(definition)
        if tree is None:
            errors = asl_parser.SyntaxErrorListener()
            parser = ASLParser(CommonTokenStream(ASLLexer(InputStream(definition))))
            parser.removeErrorListeners()
            parser.addErrorListener(errors)
            tree = parser.state_machine()
            if errors.errors:
                raise asl_parser.ASLParserException(errors=errors.errors)
            with trees_lock:
                trees[definition] = tree
        return Preprocessor().visit(tree), tree

    asl_parser.AmazonStateLanguageParser.parse = staticmethod(parse)

    get_tags = TaggedEC2Resource.get_tags

    def own_tags(self):
        # moto's get_tags is describe_tags filtered by resource-id, a pattern matched against every tagged resource;
        # an id without pattern characters matches only itself, so its own entry is the same answer, in the same
        # order.
        resource_id = getattr(self, "id", None)
        if not resource_id or any(c in resource_id for c in "*?[\\"):
            return get_tags(self)
        kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
        tags = self.ec2_backend.tags.get(resource_id, {})
        return [{"resource_id": resource_id, "key": k, "value": v, "resource_type": kind} for k, v in tags.items()]

    TaggedEC2Resource.get_tags = own_tags

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules

    # A definition moto has validated once (create, update) is valid again: its text is the whole input.
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    validate = StepFunctionsParserBackend._validate_definition
    valid = set()

    def validate_once(definition):
        if definition not in valid:
            validate(definition)
            valid.add(definition)

    StepFunctionsParserBackend._validate_definition = staticmethod(validate_once)

    # JSONPath expressions are parsed by a PLY parser built on every call; a parsed path is a pure value.
    from moto.stepfunctions.parser.asl.utils import json_path

    json_path.parse = functools.lru_cache(maxsize=4096)(json_path.parse)


class QuietRequestHandler(MotoRequestHandler):
    def log_request(self, code="-", size="-"):
        pass


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
    port_file = sys.argv[2] if len(sys.argv) > 2 else None
    if not sys.stdin.isatty():
        threading.Thread(target=_exit_when_parent_goes, daemon=True).start()
    _install_cpu_shortcuts()
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(
        "127.0.0.1",
        port,
        SerialDynamoDb(RpcV2CborAdapter(app)),
        threaded=True,
        request_handler=QuietRequestHandler,
    )
    os.environ.setdefault("MOTO_PORT", str(server.port))
    if port_file:
        with open(port_file + ".tmp", "w") as f:
            f.write(str(server.port))
        os.replace(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
