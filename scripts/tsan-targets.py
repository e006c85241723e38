#!/usr/bin/env python3
"""Prints the build targets the ThreadSanitizer stage needs (scripts/sanitize.sh).

The TSan stage runs only the concurrency tests. Building the whole tree with -fsanitize=thread
took a large share of CI's time, yet fewer than half of the test programs hold a concurrency
test. This prints every target of the TSan build directory except the test programs that hold
none: libraries, the mqsec command, modules, tools the tests start, and the test programs that
hold at least one test selected by the regular expression (ctest -R) or the label.

Which test program holds which test comes from an already built directory (the normal build),
whose tests GoogleTest discovered after building. sanitize.sh then checks that the TSan build
lists exactly as many selected tests as the normal one, so a test program this script left out
by mistake fails the stage instead of being skipped silently.

usage: tsan-targets.py <normal build dir> <tsan build dir> <regex> <label>
"""
import json
import os
import re
import subprocess
import sys


def ctest_tests(build_dir):
    out = subprocess.run(["ctest", "--test-dir", build_dir, "-N", "--show-only=json-v1"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out).get("tests", [])


def labels_of(test):
    for p in test.get("properties", []):
        if p.get("name") == "LABELS":
            return p.get("value") or []
    return []


def build_targets(build_dir):
    out = subprocess.run(["cmake", "--build", build_dir, "--target", "help"], check=True,
                         capture_output=True, text=True).stdout
    names = []
    for line in out.splitlines():
        if not line.startswith("... "):
            continue
        name = line[4:].split(" ")[0]
        # Makefile generator's own targets and per-file object targets.
        if name in {"all", "clean", "depend", "edit_cache", "install", "install/local",
                    "install/strip", "list_install_components", "rebuild_cache", "test"}:
            continue
        if name.endswith((".o", ".i", ".s")):
            continue
        names.append(name)
    return names


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    normal, tsan, regex, label = sys.argv[1:]
    pattern = re.compile(regex)
    holders, programs = set(), set()
    for t in ctest_tests(normal):
        command = t.get("command") or []
        if not command:
            continue
        program = os.path.basename(command[0])
        programs.add(program)
        if pattern.search(t["name"]) or label in labels_of(t):
            holders.add(program)
    if not holders:
        sys.exit("tsan-targets.py: no test of %s matches; is it built?" % normal)
    skip = programs - holders
    print("\n".join(name for name in build_targets(tsan) if name not in skip))


if __name__ == "__main__":
    main()
