#!/usr/bin/env python3
"""critest results for hack/conformance.sh. Stdlib only.

    conformance_report.py tsv REPORT.json
        one line per spec from a Ginkgo v2 JSON report:
        RESULT<TAB>SECONDS<TAB>SPEC<TAB>FAILURE  (RESULT: pass, fail, skip)
    conformance_report.py compare [--known FILE] [--skip FILE] [--out MD]
                                  HANDLER=TSV...
        a table of counts per handler and of every spec whose result
        differs; exit 1 if a handler fails a spec that the first handler
        (the reference, runc) passes and FILE (--known) does not list it.
"""
import argparse
import json
import re
import sys

RESULT = {"passed": "pass", "skipped": "skip", "pending": "skip"}


def spec_rows(report_path):
    with open(report_path) as f:
        suites = json.load(f)
    rows = []
    for suite in suites:
        for spec in suite.get("SpecReports") or []:
            kind = spec.get("LeafNodeType", "")
            state = spec.get("State", "")
            if kind != "It":
                # Suite nodes only matter when they fail (then no spec ran).
                if state in ("passed", "skipped", ""):
                    continue
                name = "[%s]" % kind
            else:
                name = " ".join(list(spec.get("ContainerHierarchyTexts") or [])
                                + [spec.get("LeafNodeText", "")])
            failure = spec.get("Failure") or {}
            msg = " ".join((failure.get("Message") or "").split())[:300]
            rows.append((RESULT.get(state, "fail"),
                         "%.1f" % (spec.get("RunTime", 0) / 1e9),
                         " ".join(name.split()), msg))
    rows.sort(key=lambda r: r[2])
    return rows


def load_tsv(path):
    out = {}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 3:
                out[parts[2]] = (parts[0], parts[3] if len(parts) > 3 else "")
    return out


def read_list(path):
    if not path:
        return []
    items = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                items.append(line)
    return items


def md(text):
    """text for a markdown table cell"""
    return text.replace("|", "\\|")


def read_skips(path):
    """[(compiled regexp, reason)] from hack/conformance-skip.txt."""
    out = []
    for line in read_list(path):
        pattern, _, reason = line.partition("  #")
        out.append((re.compile(pattern.strip()), reason.strip()))
    return out


def skip_reason(spec, message, skips):
    if message:
        return "the spec skips itself: " + message
    for pattern, reason in skips:
        if pattern.search(spec):
            return "hack/conformance-skip.txt: " + reason
    if "benchmark" in spec:
        return "a benchmark: critest runs benchmarks only with -benchmark"
    return "filtered out (focus)"


def compare(args):
    handlers = []
    for spec in args.results:
        name, _, path = spec.partition("=")
        handlers.append((name, load_tsv(path)))
    known = set(read_list(args.known))
    lines = ["| handler | pass | fail | skip | total |", "|---|---:|---:|---:|---:|"]
    for name, res in handlers:
        c = {"pass": 0, "fail": 0, "skip": 0}
        for r, _ in res.values():
            c[r] = c.get(r, 0) + 1
        lines.append("| %s | %d | %d | %d | %d |" % (name, c["pass"], c["fail"], c["skip"], len(res)))
    names = sorted(set().union(*[set(r) for _, r in handlers]))
    diffs = []
    for spec in names:
        results = [res.get(spec, ("absent", ""))[0] for _, res in handlers]
        if len(set(results)) > 1:
            diffs.append((spec, results))
    lines.append("")
    if diffs:
        lines.append("| spec | " + " | ".join(n for n, _ in handlers) + " |")
        lines.append("|---|" + "---|" * len(handlers))
        for spec, results in diffs:
            lines.append("| %s | %s |" % (md(spec), " | ".join(results)))
    else:
        lines.append("No spec differs between %s." % ", ".join(n for n, _ in handlers))
    failed_everywhere = [s for s in names
                         if all(res.get(s, ("", ""))[0] == "fail" for _, res in handlers)]
    if failed_everywhere:
        lines.append("")
        lines.append("Failed under every handler:")
        for s in failed_everywhere:
            lines.append("- %s: %s" % (s, handlers[0][1][s][1][:300]))
    skips = read_skips(args.skip)
    skipped = {}
    for spec in names:
        reasons = sorted({skip_reason(spec, res[spec][1], skips)
                          for _, res in handlers if res.get(spec, ("", ""))[0] == "skip"})
        if reasons:
            skipped[spec] = "; ".join(reasons)
    if skipped:
        lines.append("")
        lines.append("Skipped (%d):" % len(skipped))
        lines.append("")
        lines.append("| spec | why |")
        lines.append("|---|---|")
        for spec, why in skipped.items():
            lines.append("| %s | %s |" % (md(spec), md(why)))
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    rc = 0
    for name, res in handlers:
        if not any(r == "pass" for r, _ in res.values()):
            print("%s: no spec passed (critest could not run?)" % name, file=sys.stderr)
            rc = 1
    ref_name, ref = handlers[0]
    for name, res in handlers[1:]:
        for spec in names:
            if ref.get(spec, ("", ""))[0] == "pass" and res.get(spec, ("", ""))[0] == "fail":
                if spec in known:
                    print("known %s-only failure: %s" % (name, spec))
                else:
                    print("NEW %s-only failure (%s passes): %s\n    %s"
                          % (name, ref_name, spec, res[spec][1]), file=sys.stderr)
                    rc = 1
    return rc


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tsv")
    t.add_argument("report")
    c = sub.add_parser("compare")
    c.add_argument("--known")
    c.add_argument("--skip")
    c.add_argument("--out")
    c.add_argument("results", nargs="+")
    a = ap.parse_args()
    if a.cmd == "tsv":
        for row in spec_rows(a.report):
            print("\t".join(row))
        return 0
    return compare(a)


if __name__ == "__main__":
    sys.exit(main())
