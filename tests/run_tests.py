#!/usr/bin/env python3
"""`make test`'s Rust half: builds every test binary of the workspace once, then runs them a few at a time.

`cargo test` runs its test binaries one after another, and most of them wait on moto (each binary starts its own
server) far more than they compute: on 2 cores the Rust tests used about 0.8 of a core that way. Here up to
FINOPS_TEST_JOBS binaries (default 3) run at once, the longest first (by the last run's times in target/, else by
size), each in its package's directory as `cargo test` runs it. Each binary's output is printed whole if it failed,
as one line if it passed; the end says how many tests passed and failed. A binary still running after
FINOPS_TEST_TIMEOUT seconds (default 900) is killed with everything it started, and fails. Exits non-zero if any
test failed, or if nothing ran.
Arguments after `--` go to every test binary (a name filter, `--nocapture`, ...).
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMES = os.path.join(ROOT, "target", "test-times.json")
RESULT = re.compile(r"test result: (\w+)\. (\d+) passed; (\d+) failed; (\d+) ignored")


def build():
    """Builds every test target (`cargo test --workspace --no-run`) and lists the executables it made."""
    cargo = os.environ.get("CARGO", "cargo")
    proc = subprocess.Popen(
        [cargo, "test", "--workspace", "--no-run", "--message-format=json-render-diagnostics"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    binaries = []
    for line in proc.stdout:
        message = json.loads(line)
        if message.get("reason") != "compiler-artifact" or not message.get("executable"):
            continue
        if not message["profile"]["test"]:
            continue
        target = message["target"]
        binaries.append(
            {
                "name": f"{os.path.basename(os.path.dirname(message['manifest_path']))} {target['kind'][0]} {target['name']}",
                "executable": message["executable"],
                "dir": os.path.dirname(message["manifest_path"]),
            }
        )
    if proc.wait() != 0:
        sys.exit(f"run_tests: the test build failed (cargo exited {proc.returncode})")
    return binaries


def run(binary, args, timeout):
    started = time.monotonic()
    # Its own session, so that a binary past its time goes with every process it started (moto, ChromeDriver).
    proc = subprocess.Popen(
        [binary["executable"], *args],
        cwd=binary["dir"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        env={**os.environ, "CARGO_MANIFEST_DIR": binary["dir"]},
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        output += f"\nrun_tests: killed after {timeout} s (FINOPS_TEST_TIMEOUT): a test that never ends fails\n"
    seconds = time.monotonic() - started
    counts = [0, 0, 0]
    for _, passed, failed, ignored in RESULT.findall(output):
        counts[0] += int(passed)
        counts[1] += int(failed)
        counts[2] += int(ignored)
    return binary, proc.returncode, output, seconds, counts


def main():
    args = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []
    jobs = int(os.environ.get("FINOPS_TEST_JOBS", "3"))
    timeout = int(os.environ.get("FINOPS_TEST_TIMEOUT", "900"))
    started = time.monotonic()
    binaries = build()
    built = time.monotonic() - started
    try:
        with open(TIMES) as f:
            last = json.load(f)
    except (OSError, ValueError):
        last = {}
    binaries.sort(key=lambda b: (-last.get(b["name"], 0.0), -os.path.getsize(b["executable"])))
    print(f"run_tests: {len(binaries)} test binaries built in {built:.0f} s; running {jobs} at a time", flush=True)

    times, failures, totals = {}, [], [0, 0, 0]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for done in as_completed([pool.submit(run, b, args, timeout) for b in binaries]):
            binary, code, output, seconds, counts = done.result()
            times[binary["name"]] = round(seconds, 1)
            totals = [a + b for a, b in zip(totals, counts)]
            if code != 0:
                failures.append(binary["name"])
                print(f"\n===== FAILED {binary['name']} ({binary['executable']}), exit {code}, {seconds:.1f} s\n{output}", flush=True)
            else:
                print(f"  ok {seconds:6.1f} s  {counts[0]:4} passed  {binary['name']}", flush=True)
    if not args:  # a filtered run's times say nothing of the next whole one
        os.makedirs(os.path.dirname(TIMES), exist_ok=True)
        with open(TIMES, "w") as f:
            json.dump(times, f, indent=1, sort_keys=True)
    print(
        f"run_tests: {totals[0]} passed, {totals[1]} failed, {totals[2]} ignored in {len(binaries)} binaries;"
        f" {time.monotonic() - started:.0f} s ({built:.0f} s building)"
    )
    if failures:
        print("run_tests: failed: " + ", ".join(failures))
        return 1
    if totals[0] == 0 and not args:
        print("run_tests: no test ran: that is a broken build, not a pass")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
