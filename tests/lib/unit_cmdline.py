#!/usr/bin/env python3
"""What systemd would run for one instance of a unit, for tests that cannot
run systemd itself.

    unit_cmdline.py UNIT INSTANCE exec KEY   argv of KEY (ExecStart, ...), NUL-separated
    unit_cmdline.py UNIT INSTANCE env        the environment the unit sets, NUL-separated
    unit_cmdline.py UNIT INSTANCE get KEY    the values of [Service] KEY, one a line

The subset of systemd's rules the project's units use: the %i and %I
specifiers, Environment= then EnvironmentFile= (NAME=VALUE lines, '#'
comments, quotes stripped; a leading '-' makes the file optional), and in
command lines "${NAME}" as one word and "$NAME" split at whitespace
(systemd.service(5), "Command lines"); the command prefixes -@:+! are
dropped.
"""
import os
import re
import shlex
import sys


def parse(path):
    sections, cur = {}, None
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                cur = sections.setdefault(line.strip("[]"), [])
                continue
            k, _, v = line.partition("=")
            cur.append((k.strip(), v.strip()))
    return sections


def main():
    unit, inst, what = sys.argv[1], sys.argv[2], sys.argv[3]
    svc = parse(unit)["Service"]
    spec = lambda s: s.replace("%i", inst).replace("%I", inst).replace("%%", "%")
    env = {}
    for k, v in svc:
        if k == "Environment":
            for a in shlex.split(spec(v)):
                n, _, val = a.partition("=")
                env[n] = val
    for k, v in svc:
        if k == "EnvironmentFile" and what != "get":
            p = spec(v)
            optional = p.startswith("-")
            p = p.lstrip("-")
            if not os.path.exists(p) and optional:
                continue
            with open(p) as f:
                for line in f:
                    line = line.strip()
                    if not line or line[0] in "#;" or "=" not in line:
                        continue
                    n, _, val = line.partition("=")
                    val = val.strip()
                    if len(val) >= 2 and val[0] == val[-1] and val[0] in "'\"":
                        val = val[1:-1]
                    env[n.strip()] = val
    if what == "env":
        sys.stdout.write("".join("%s=%s\0" % kv for kv in env.items()))
    elif what == "get":
        for k, v in svc:
            if k == sys.argv[4]:
                print(spec(v))
    elif what == "exec":
        lines = [v for k, v in svc if k == sys.argv[4]]
        if len(lines) != 1:
            sys.exit("%s: %d %s= lines" % (unit, len(lines), sys.argv[4]))
        argv = []
        for w in shlex.split(spec(lines[0]).lstrip("-@:+!")):
            m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", w)
            if m:
                argv += env.get(m.group(1), "").split()
                continue
            argv.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}",
                               lambda m: env.get(m.group(1), ""), w))
        sys.stdout.write("".join(a + "\0" for a in argv))
    else:
        sys.exit("unknown request " + what)


if __name__ == "__main__":
    main()
