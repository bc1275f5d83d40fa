"""The instance families with instance-store (local, ephemeral) disks, for the IAM guard of the CDK app.

Usage: python instance_storage_families.py [--check] OUTPUT.json

Read from moto's copy of EC2's DescribeInstanceTypes catalogue (InstanceStorageSupported). The actions role denies
ec2:StopInstances on these families by ec2:InstanceType, as a second layer behind the policy code, which asks
DescribeInstanceTypes at run time and so also knows families added after this list was made. --check fails when
the committed file differs from the catalogue of the pinned moto.
"""

import gzip
import json
import os
import sys

import moto


def families():
    path = os.path.join(os.path.dirname(moto.__file__), "ec2", "resources", "instance_types.json.gz")
    with gzip.open(path) as f:
        catalogue = json.load(f)
    return sorted({name.rsplit(".", 1)[0] for name, t in catalogue.items() if t.get("InstanceStorageSupported")})


def main(argv):
    check = "--check" in argv
    out = [a for a in argv if not a.startswith("--")][0]
    text = json.dumps({"source": "moto " + moto.__version__ + " EC2 instance type catalogue", "families": families()}, indent=1) + "\n"
    if check:
        with open(out) as f:
            if f.read() != text:
                sys.exit(f"{out} is out of date: run python {sys.argv[0]} {out}")
        print(f"{out}: {len(families())} instance families with instance storage")
        return
    with open(out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main(sys.argv[1:])
