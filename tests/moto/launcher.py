"""Starts a real moto server for the finops tests and the demo, on 127.0.0.1.

Usage: python launcher.py PORT

Two additions to plain `moto_server`, both about lifecycle and seeding rather than behaviour:
- It exits when its standard input closes, so a test binary that dies (or never drops its handle) never leaves an
  orphaned server behind.
- Instances launched with the tag `finops-test:launched-days-ago=N` get a LaunchTime N days in the past. Real fleets
  are old; EC2 has no API to set LaunchTime, and every moto instance would otherwise be brand new, which the idle
  criteria rightly treat as "insufficient data". The tag is only read here, by the emulator's seeding hook; the
  product never reads it.
"""

import datetime
import os
import sys
import threading

from moto.ec2.models.instances import InstanceBackend
from moto.server import main as moto_main

BACKDATE_TAG = "finops-test:launched-days-ago"

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


def _exit_when_parent_goes():
    try:
        sys.stdin.read()
    finally:
        os._exit(0)


if __name__ == "__main__":
    port = sys.argv[1]
    if not sys.stdin.isatty():
        threading.Thread(target=_exit_when_parent_goes, daemon=True).start()
    moto_main(["-H", "127.0.0.1", "-p", port])
