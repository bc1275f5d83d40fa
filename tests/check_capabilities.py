"""Capabilities by type: only the actions function (and the local runner that runs it) may hold what can change an
instance. Fails when another workspace crate depends on finops-actions, or when library code outside it calls an EC2
operation that snapshots, tags, stops, terminates, deletes a volume or releases an address.

Usage: python check_capabilities.py  (from the repository root; `make lint` and `make test` run it)
"""

import json
import pathlib
import re
import subprocess
import sys

# Crates allowed to depend on the stop-capable crate: the Lambda itself and the local runner that hosts it.
ALLOWED_DEPENDENTS = {"finops-local"}
# Test harnesses that play a person acting on emulated AWS, and the calls each may make. finops-chaos tags an
# instance production while its approval waits (what a colleague might do), to check the stop is then refused, and
# starts and stops a stopped instance again before its undo (a person who took it back), to check the undo refuses.
# finops-testkit seeds the sample fleet as its people left it: two instances someone stopped (one weeks ago). Both
# create the unattached volumes of their fleets (seeding: a new volume, nothing existing is changed).
HARNESS_CALLS = {
    "finops-chaos": {"create_tags", "create_volume", "start_instances", "stop_instances"},
    "finops-testkit": {"stop_instances", "create_volume"},
}
# SDK operations that change an instance or its disks, as the Rust SDK spells the calls (an undo's start and its
# volume recreated from a snapshot included).
ACTING_CALLS = re.compile(r"\.(stop_instances|terminate_instances|create_snapshots|create_snapshot|create_tags|reboot_instances|modify_instance_attribute|delete_volume|release_address|disassociate_address|detach_volume|delete_snapshot|start_instances|create_volume)\(\)")


def main():
    metadata = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--no-deps", "--format-version", "1", "--offline"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    failures = []
    for package in metadata["packages"]:
        if package["name"] == "finops-actions":
            continue
        kinds = sorted({d["kind"] or "normal" for d in package["dependencies"] if d["name"] == "finops-actions"})
        if kinds and package["name"] not in ALLOWED_DEPENDENTS:
            failures.append(f"{package['name']} depends on finops-actions ({', '.join(kinds)}): only the actions Lambda may stop instances")
        source = pathlib.Path(package["manifest_path"]).parent / "src"
        for path in sorted(source.rglob("*.rs")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                found = ACTING_CALLS.search(line)
                if found and found.group(1) not in HARNESS_CALLS.get(package["name"], set()):
                    failures.append(f"{path}:{number}: an EC2 call that acts, outside finops-actions: {line.strip()}")
    if failures:
        print("\n".join(f"capabilities: {f}" for f in failures), file=sys.stderr)
        sys.exit(1)
    dependents = sorted(p["name"] for p in metadata["packages"] if any(d["name"] == "finops-actions" for d in p["dependencies"]))
    print(f"capabilities: only {', '.join(dependents)} depend on finops-actions; no other crate's code can act on an instance")


if __name__ == "__main__":
    main()
