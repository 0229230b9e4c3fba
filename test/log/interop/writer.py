#!/usr/bin/python3
# A site-log writer exactly as the original memcached idiom has it (memipc's seed layout), through Debian's
# python3-pymemcache: `incr Counter`; when the counter is missing, `add Counter 0` and `incr` again; then
# `add logentry-<n>` with the line. Used by test/log/interop.test.ts; prints "<n>\t<line>" for each entry.
#
#   writer.py HOST PORT COUNT TAG [COUNTER [ENTRY_PREFIX]]   writes COUNT lines "<TAG> <i> hello"
import sys

from pymemcache.client.base import Client


def main():
    host, port, count, tag = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    counter = sys.argv[5] if len(sys.argv) > 5 else "Counter"
    prefix = sys.argv[6] if len(sys.argv) > 6 else "logentry-"
    # pymemcache sends add with noreply unless told otherwise; the writer wants to know the add landed.
    mc = Client((host, port), connect_timeout=5, timeout=10, default_noreply=False)
    out = []
    for i in range(1, count + 1):
        line = "%s %d hello" % (tag, i)
        n = mc.incr(counter, 1)
        if n is None:
            mc.add(counter, "0")
            n = mc.incr(counter, 1)
        if not mc.add("%s%d" % (prefix, n), line):
            sys.exit("%s%d already exists: the counter handed out a number twice" % (prefix, n))
        out.append("%d\t%s\n" % (n, line))
    mc.close()
    sys.stdout.write("".join(out))


if __name__ == "__main__":
    main()
