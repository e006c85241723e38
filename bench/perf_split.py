#!/usr/bin/env python3
"""Where one operation's CPU goes, per bench case, from a perf recording of mqsec-bench.

    perf record -F 1000 --call-graph dwarf,16384 -o perf.data -- \\
        build/bench/mqsec-bench --cases raw_sign,signed_send --keys p256 --threads 1 \\
        --no-remote --messages 0 --contexts 0 --seconds 4
    perf script -i perf.data -F comm,tid,ip,sym,dso > perf.txt
    bench/perf_split.py perf.txt --hz 1000 --ops raw_sign=47486,signed_send=42168

Each harness thread runs one case, so a thread is told by its stacks: raw_sign_op, MQSendMessage
or MQReceiveMessage (the first that any of its samples holds; the main thread, which builds the
operations, is left out). The store's express writer (BatchWriter::run) and its claimer (the
`mqsec-claim` thread) are cases of their own, per operation of signed_send and receive_verify. For each case
it prints microseconds of CPU per operation (samples / hz / ops), split into the token's
(`C_Sign*`, `C_Verify*` on the stack), OpenSSL's verification (`EVP_DigestVerify*`) and the rest,
and the rest's largest mqsec functions. `--ops` is operations per case (ops/s x seconds from the
bench's own output); without it, shares of the case's samples are printed instead.
docs/performance.md ("Where two receiving threads' time goes") has figures made with it.
"""
import argparse
import collections
import re
import sys

FRAME = re.compile(r"\s*[0-9a-f]+ (.*?)(?: \(([^()]*)\))?$")  # address, symbol, (dso)
MARKERS = (("raw_sign", "raw_sign_op"), ("signed_send", "MQSendMessage"),
           ("receive_verify", "MQReceiveMessage"), ("writer", "BatchWriter::run"))


def read_samples(path):
    samples, cur = [], None
    with open(path, errors="replace") as f:
        for line in f:
            if not line.strip():
                if cur:
                    samples.append(cur)
                cur = None
            elif not line.startswith((" ", "\t")):
                if cur:
                    samples.append(cur)
                head = line.split()
                cur = (head[0], head[1] if len(head) > 1 else "?", [])
            elif cur is not None:
                m = FRAME.match(line.rstrip())
                if m:
                    cur[2].append(re.sub(r"\+0x[0-9a-f]+$", "", m.group(1)))
    if cur:
        samples.append(cur)
    return samples


def part_of(frames):
    if any(f.startswith(("C_Sign", "C_Verify")) for f in frames):
        return "token"
    if any(f.startswith("EVP_DigestVerify") for f in frames):
        return "openssl verify"
    return "rest"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("perf_script", help="output of perf script -F comm,tid,ip,sym,dso")
    ap.add_argument("--hz", type=float, default=1000, help="perf record -F (default 1000)")
    ap.add_argument("--ops", default="", help="case=operations,... (e.g. raw_sign=47486)")
    ap.add_argument("--top", type=int, default=8, help="mqsec functions listed per case")
    a = ap.parse_args()
    ops = {}
    for item in filter(None, a.ops.split(",")):
        name, _, n = item.partition("=")
        ops[name] = float(n)

    samples = read_samples(a.perf_script)
    if not samples:
        sys.exit("perf_split: no samples in " + a.perf_script)
    main_tid = min((int(t) for _, t, _ in samples if t.isdigit()), default=-1)
    case_of = {}
    for comm, tid, frames in samples:
        if comm == "mqsec-claim":
            case_of[tid] = "claimer"
            continue
        if tid == str(main_tid) or tid in case_of:
            continue
        text = " ".join(frames)
        for name, marker in MARKERS:
            if marker in text:
                case_of[tid] = name
                break

    parts = collections.defaultdict(collections.Counter)
    ours = collections.defaultdict(collections.Counter)
    for comm, tid, frames in samples:
        case = case_of.get(tid)
        if case is None:
            continue
        part = part_of(frames)
        parts[case][part] += 1
        if part == "rest":
            top = next((f for f in frames if f.startswith("mqsec::")), frames[0] if frames else "?")
            ours[case][top] += 1

    for case in sorted(parts):
        total = sum(parts[case].values())
        per = {"claimer": "receive_verify", "writer": "signed_send"}.get(case, case)
        n = ops.get(per)
        unit = (lambda c: f"{1e6 * c / a.hz / n:8.1f} us/op") if n else \
               (lambda c: f"{100.0 * c / total:7.1f} %   ")
        print(f"{case}: {total} samples")
        for part, c in parts[case].most_common():
            print(f"  {unit(c)}  {part}")
        for func, c in ours[case].most_common(a.top):
            print(f"  {unit(c)}    {func[:100]}")


if __name__ == "__main__":
    main()
