"""Checks and measures the release `bootstrap` of every Lambda that `make package` built.

For each function: the ELF machine must be the architecture asked for; its size is reported; it is started (under
qemu-user when the machine is not this host's) with the variables a deployment sets and a local Lambda Runtime API,
and the time from process start to its first `GET .../runtime/invocation/next` is reported; then it is started with
no Runtime API listening, and must exit with an error (no crash, no hang): far enough to prove it runs.

Usage: python tests/lambda/bootstraps.py --arch arm64 [--dir target/lambda] [--runs 5] [--max-mb 10]
"""

import argparse
import http.server
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time

FUNCTIONS = ["inventory", "metrics", "reasoning", "policy", "request-approval", "approval-callback", "actions", "agent-tools", "run-cost", "savings"]
MACHINES = {0xB7: "arm64", 0x3E: "x86_64"}
HOST = {"x86_64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine()]

# What the CDK app sets (cdk/lib/*.ts), with placeholder values: every main() reads its configuration before it
# asks the Runtime API for an event, and a missing variable would stop it there.
ENVIRONMENT = {
    "AWS_REGION": "ap-southeast-2",
    "AWS_DEFAULT_REGION": "ap-southeast-2",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "AWS_LAMBDA_LOG_STREAM_NAME": "smoke",
    "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/smoke",
    "FINOPS_RUN_BUCKET": "finops-runs",
    "FINOPS_REGIONS": "ap-southeast-2",
    "FINOPS_MODE": "act",
    "FINOPS_REASONER": "rules",
    "FINOPS_PRICING": "embedded",
    "FINOPS_APPROVALS_TABLE": "finops-approvals",
    "FINOPS_LEDGER_TABLE": "finops-ledger",
    "FINOPS_APPROVAL_TOPIC_ARN": "arn:aws:sns:ap-southeast-2:123456789012:finops-approvals",
    "FINOPS_APPROVAL_BASE_URL": "https://approve.example.com/",
    "FINOPS_APPROVAL_WINDOW_SECONDS": "259200",
    "FINOPS_SIGNING_SECRET_ID": "finops-signing",
    "FINOPS_STATE_MACHINE_ARN": "arn:aws:states:ap-southeast-2:123456789012:stateMachine:finops-agent",
    "FINOPS_FUNCTION_MEMORY": "{}",
    "FINOPS_LAMBDA_ARCHITECTURE": "arm64",
    "RUST_LOG": "info",
}


def machine_of(path):
    with open(path, "rb") as f:
        header = f.read(20)
    if header[:4] != b"\x7fELF":
        return None
    return MACHINES.get(int.from_bytes(header[18:20], "little"))


def command(path, arch):
    if arch == HOST:
        return [path]
    qemu = shutil.which("qemu-aarch64" if arch == "arm64" else "qemu-x86_64")
    if qemu is None:
        sys.exit("bootstraps: qemu-user is needed to run another architecture's bootstrap (apt-get install qemu-user)")
    sysroot = "/usr/aarch64-linux-gnu" if arch == "arm64" else "/usr/x86_64-linux-gnu"
    return [qemu, "-L", sysroot, path]


class RuntimeApi(http.server.BaseHTTPRequestHandler):
    """A Lambda Runtime API that notes when the first `next` arrives, and has no event to give."""

    first_next = None

    def do_GET(self):
        if self.path.endswith("/runtime/invocation/next") and RuntimeApi.first_next is None:
            RuntimeApi.first_next = time.monotonic()
        self.send_response(500)
        self.end_headers()

    def log_message(self, *args):
        pass


def time_to_first_request(cmd, function):
    RuntimeApi.first_next = None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RuntimeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(ENVIRONMENT, AWS_LAMBDA_FUNCTION_NAME=f"finops-{function}", AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_address[1]}")
    start = time.monotonic()
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while RuntimeApi.first_next is None and process.poll() is None and time.monotonic() - start < 30:
            time.sleep(0.001)
    finally:
        process.kill()
        _, err = process.communicate()
        server.shutdown()
        server.server_close()
    if RuntimeApi.first_next is None:
        sys.exit(f"bootstraps: finops-{function} never asked the Runtime API for an event:\n{err.decode(errors='replace')[-2000:]}")
    return (RuntimeApi.first_next - start) * 1000


def fails_cleanly_without_runtime_api(cmd, function):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(ENVIRONMENT, AWS_LAMBDA_FUNCTION_NAME=f"finops-{function}", AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{port}")
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        sys.exit(f"bootstraps: finops-{function} hung with no Runtime API")
    err = done.stderr.decode(errors="replace")
    if done.returncode <= 0 or "panicked" in err:
        sys.exit(f"bootstraps: finops-{function} did not exit with an error (exit {done.returncode}):\n{err[-2000:]}")
    return done.returncode


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", choices=["arm64", "x86_64"], required=True)
    parser.add_argument("--dir", default="target/lambda")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-mb", type=float, default=None, help="fail when a bootstrap is larger")
    parser.add_argument("--functions", default=",".join(FUNCTIONS), help="comma-separated, default every function")
    args = parser.parse_args()
    emulated = " (under qemu-user: emulated, far slower than on Graviton)" if args.arch != HOST else ""
    print(f"bootstraps: {args.arch} builds in {args.dir}; start = process start to first Runtime API request, median of {args.runs}{emulated}")
    print(f"  {'function':<20} {'size':>9} {'start':>10}  without a Runtime API")
    too_big = []
    for function in args.functions.split(","):
        path = os.path.join(args.dir, f"finops-{function}", "bootstrap")
        if not os.path.exists(path):
            sys.exit(f"bootstraps: {path} is missing (make package builds it)")
        machine = machine_of(path)
        if machine != args.arch:
            sys.exit(f"bootstraps: {path} is built for {machine}, not {args.arch}")
        size = os.path.getsize(path) / 1_000_000
        cmd = command(path, args.arch)
        start = statistics.median(time_to_first_request(cmd, function) for _ in range(args.runs))
        code = fails_cleanly_without_runtime_api(cmd, function)
        print(f"  finops-{function:<13} {size:>6.2f} MB {start:>7.1f} ms  exits {code}")
        if args.max_mb is not None and size > args.max_mb:
            too_big.append(f"finops-{function} ({size:.2f} MB)")
    if too_big:
        sys.exit(f"bootstraps: larger than {args.max_mb} MB: {', '.join(too_big)}")


if __name__ == "__main__":
    main()
