#!/usr/bin/env python3
"""Where the receiving threads and the store's claimer spend their time off the CPU, from a
recording of the scheduler's switches with call stacks.

    perf record -e sched:sched_switch -e sched:sched_wakeup --call-graph dwarf,8192 \\
        -o sched.data -- build/bench/mqsec-bench --cases receive_verify --keys p256 \\
        --threads 2 --seconds 3 --no-remote --messages 0 --contexts 0
    perf script -i sched.data -F comm,tid,time,event,trace,ip,sym > sched.txt
    bench/perf_offcpu.py sched.txt

A thread whose stacks hold MQReceiveMessage is a receiving thread; `mqsec-claim` is the store's
claimer. For each switch-out of such a thread, the time until it runs again is counted under its
state (runnable: preempted or yielding; blocked: waiting for a lock, a condition or I/O) and the
place it left the CPU: the innermost mqsec function on the stack with the first frame below it
(the lock, futex or system call it waited in). Prints each kind of thread's time on and off the
CPU, and the largest places. docs/performance.md ("M1 and M2") has figures made with it.

Read the places, not the totals: on this VM a recording lost switches (in a `perf sched record`
of the same run, a third of the switches on a CPU named a previous task that was not the last
one switched in there), and an interval whose switch-in is lost is not counted. The bench's own
`on_cpu`, `runnable` and `blocked` (from /proc schedstat) are the exact totals.
"""
import argparse
import collections
import re
import sys

SWITCH = re.compile(r"^\s*(\S.*?)\s+(\d+)\s+([\d.]+): sched:sched_switch: .*?prev_pid=(\d+) "
                    r".*?prev_state=(\S+) ==> .*?next_pid=(\d+)")
OTHER = re.compile(r"^\s*(\S.*?)\s+(\d+)\s+([\d.]+): ")
FRAME = re.compile(r"^\s+([0-9a-f]+) (.*)$")


def events(path):
    """Yields (time, prev_tid, prev_state, next_tid, stack, comm) for each switch."""
    cur, stack = None, []
    with open(path, errors="replace") as f:
        for line in f:
            m = SWITCH.match(line)
            if m:
                if cur:
                    yield cur + (stack,)
                cur = (float(m.group(3)), int(m.group(4)), m.group(5), int(m.group(6)),
                       m.group(1))
                stack = []
                continue
            if OTHER.match(line):
                if cur:
                    yield cur + (stack,)
                cur, stack = None, []
                continue
            fm = FRAME.match(line)
            if fm and cur:
                # Kernel frames are told by their addresses, marked for place().
                kernel = fm.group(1).startswith("ffffffff")
                stack.append(("[k] " if kernel else "") + fm.group(2))
    if cur:
        yield cur + (stack,)


def place(stack):
    """The innermost mqsec frame, with the frame just inside it (what it waited in)."""
    for i, sym in enumerate(stack):
        if "mqsec::" in sym:
            # The nearest user-space frame inside it (a lock, a system call's wrapper), else the
            # kernel's.
            below = [s for s in reversed(stack[:i]) if not s.startswith("[k] ")]
            inner = below[0] if below else (stack[i - 1] if i else "")
            inner = inner.replace(" (inlined)", "").replace("[k] ", "")
            name = re.sub(r"\(.*", "", sym.replace(" (inlined)", "")).strip()
            return f"{name} <- {re.sub(r'[ (].*', '', inner)}"
    return "(no mqsec frame)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("script", help="perf script output (see above)")
    ap.add_argument("--top", type=int, default=8, help="places to print per kind")
    args = ap.parse_args()

    kind = {}
    out = {}  # tid -> (time it left, state, place)
    on_since = {}
    on = collections.Counter()
    off = collections.defaultdict(collections.Counter)  # kind -> (state, place) -> seconds
    count = collections.defaultdict(collections.Counter)
    first = last = None
    for t, prev, state, nxt, comm, stack in events(args.script):
        if prev not in kind or kind[prev] == "other":
            # Told by the thread's first stack that shows it (a receiving thread may first leave
            # the CPU in the harness).
            if comm.startswith("mqsec-claim"):
                kind[prev] = "claimer"
            elif any("MQReceiveMessage" in s for s in stack):
                kind[prev] = "receiver"
            else:
                kind.setdefault(prev, "other")
        if kind[prev] != "other":
            first = t if first is None else first
            last = t
        if prev in on_since:
            on[prev] += t - on_since.pop(prev)
        out[prev] = (t, "runnable" if state.startswith("R") else "blocked", place(stack))
        if nxt in out:
            t0, st, pl = out.pop(nxt)
            off[nxt][(st, pl)] += t - t0
        on_since[nxt] = t

    if first is not None:
        print(f"from the first switch of a receiving or claiming thread to the last: "
              f"{last - first:.3f} s")
    for k in ("receiver", "claimer"):
        tids = [tid for tid, v in kind.items() if v == k]
        if not tids:
            continue
        total_on = sum(on[tid] for tid in tids)
        merged = collections.Counter()
        for tid in tids:
            merged.update(off[tid])
        total_off = sum(merged.values())
        by_state = collections.Counter()
        for (st, _), v in merged.items():
            by_state[st] += v
        print(f"{k}: {len(tids)} threads, on CPU {total_on:.3f} s, off {total_off:.3f} s "
              f"({100 * total_off / max(total_on + total_off, 1e-9):.1f} %): "
              + ", ".join(f"{st} {v:.3f} s" for st, v in by_state.most_common()))
        for (st, pl), v in merged.most_common(args.top):
            print(f"  {v:8.3f} s  {st:8}  {pl}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
