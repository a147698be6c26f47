"""promtext.py -- a strict checker of the Prometheus text exposition format
0.0.4, for the tests that scrape GET /metrics (standard library only).

check(text) -> (families, errors): families maps a family name to
{"type", "help", "samples": [(name, labels dict, value)]}; errors is a list
of strings, empty when the text is valid. It checks what a scraper would
refuse or misread: UTF-8; one HELP and one TYPE per family, before its
samples, and each family's lines together; names, label syntax and escapes
(\\, \" and \n only); a value on every sample; no series twice; counters
named _total and not negative; each histogram's buckets with strictly
ascending le ending at +Inf, cumulative, +Inf equal to _count, and _sum
within what the buckets allow.
"""
import math
import re

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LNAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _labels(s, i, errs, ln):
    """Parse {a="b",...} starting at s[i] == '{'. Returns (dict, next index)."""
    out = {}
    i += 1
    while True:
        if i < len(s) and s[i] == "}":
            return out, i + 1
        m = LNAME.match(s, i)
        if not m:
            errs.append("line %d: bad label name at %d" % (ln, i))
            return out, len(s)
        name = m.group(0)
        i = m.end()
        if s[i:i + 2] != '="':
            errs.append("line %d: expected =\" after label %s" % (ln, name))
            return out, len(s)
        i += 2
        v = []
        while True:
            if i >= len(s):
                errs.append("line %d: unterminated label value" % ln)
                return out, len(s)
            c = s[i]
            if c == "\\":
                n = s[i + 1:i + 2]
                if n == "\\":
                    v.append("\\")
                elif n == '"':
                    v.append('"')
                elif n == "n":
                    v.append("\n")
                else:
                    errs.append("line %d: bad escape \\%s" % (ln, n))
                i += 2
                continue
            if c == '"':
                i += 1
                break
            if c == "\n":
                errs.append("line %d: raw newline in label value" % ln)
            v.append(c)
            i += 1
        if name in out:
            errs.append("line %d: label %s repeated" % (ln, name))
        out[name] = "".join(v)
        if i < len(s) and s[i] == ",":
            i += 1
            continue
        if i < len(s) and s[i] == "}":
            return out, i + 1
        errs.append("line %d: expected , or } after label value" % ln)
        return out, len(s)


def _value(v):
    if v in ("+Inf", "Inf"):
        return math.inf
    if v == "-Inf":
        return -math.inf
    if v == "NaN":
        return math.nan
    return float(v)


def _family_of(name, types):
    for suf in ("_bucket", "_sum", "_count"):
        if name.endswith(suf):
            base = name[: -len(suf)]
            if types.get(base) in ("histogram", "summary"):
                return base
    return name


def check(raw):
    errs = []
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            return {}, ["not UTF-8: %s" % e]
    else:
        text = raw
    if text and not text.endswith("\n"):
        errs.append("text does not end with a newline")
    fams = {}
    types, helps = {}, {}
    seen_samples = set()
    closed = set()  # families whose samples ended (another family began)
    current = None
    for ln, line in enumerate(text.split("\n")[:-1] if text.endswith("\n") else
                              text.split("\n"), 1):
        if line == "":
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                fam = parts[2]
                if not NAME.fullmatch(fam):
                    errs.append("line %d: bad family name %r" % (ln, fam))
                if parts[1] == "TYPE":
                    if fam in types:
                        errs.append("line %d: second TYPE for %s" % (ln, fam))
                    t = parts[3] if len(parts) > 3 else ""
                    if t not in ("counter", "gauge", "histogram", "summary", "untyped"):
                        errs.append("line %d: bad type %r" % (ln, t))
                    if fam in fams and fams[fam]["samples"]:
                        errs.append("line %d: TYPE for %s after its samples" % (ln, fam))
                    types[fam] = t
                else:
                    if fam in helps:
                        errs.append("line %d: second HELP for %s" % (ln, fam))
                    h = parts[3] if len(parts) > 3 else ""
                    if re.search(r"\\[^\\n]", h.replace("\\\\", "")):
                        errs.append("line %d: bad escape in HELP" % ln)
                    helps[fam] = h
                if fam in closed:
                    errs.append("line %d: %s %s after the family ended" % (ln, parts[1], fam))
                f = fams.setdefault(fam, {"type": None, "help": None, "samples": []})
                f["type"] = types.get(fam)
                f["help"] = helps.get(fam)
                if current is not None and current != fam:
                    closed.add(current)
                current = fam
            continue
        m = NAME.match(line)
        if not m:
            errs.append("line %d: bad sample line %r" % (ln, line[:80]))
            continue
        name = m.group(0)
        i = m.end()
        labels = {}
        if i < len(line) and line[i] == "{":
            labels, i = _labels(line, i, errs, ln)
        rest = line[i:]
        if not rest.startswith(" "):
            errs.append("line %d: no space before value: %r" % (ln, line[:120]))
            continue
        toks = rest.split()
        if len(toks) not in (1, 2):
            errs.append("line %d: bad value/timestamp %r" % (ln, rest))
            continue
        try:
            val = _value(toks[0])
        except ValueError:
            errs.append("line %d: bad value %r" % (ln, toks[0]))
            continue
        fam = _family_of(name, types)
        if fam not in types:
            errs.append("line %d: sample %s without TYPE" % (ln, name))
        if fam in closed:
            errs.append("line %d: sample of %s after the family ended (not contiguous)"
                        % (ln, fam))
        if current is not None and current != fam:
            closed.add(current)
        current = fam
        key = (name, tuple(sorted(labels.items())))
        if key in seen_samples:
            errs.append("line %d: duplicate series %s%r" % (ln, name, labels))
        seen_samples.add(key)
        f = fams.setdefault(fam, {"type": types.get(fam), "help": helps.get(fam),
                                  "samples": []})
        f["samples"].append((name, labels, val))
        t = types.get(fam)
        if t == "counter":
            if not name.endswith("_total"):
                errs.append("line %d: counter %s does not end in _total" % (ln, name))
            if val < 0 or math.isnan(val):
                errs.append("line %d: counter %s negative/NaN" % (ln, name))
        if t == "histogram" and name == fam:
            errs.append("line %d: histogram sample without _bucket/_sum/_count" % ln)
    for fam, t in types.items():
        if fam not in helps:
            errs.append("family %s has TYPE but no HELP" % fam)
    # Histograms: cumulative buckets, +Inf == _count, _sum >= 0 when all observations >= 0.
    for fam, f in fams.items():
        if f["type"] != "histogram":
            continue
        groups = {}
        for name, labels, val in f["samples"]:
            base = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            g = groups.setdefault(base, {"buckets": [], "sum": None, "count": None})
            if name.endswith("_bucket"):
                if "le" not in labels:
                    errs.append("%s: bucket without le" % fam)
                    continue
                g["buckets"].append((_value(labels["le"]), val))
            elif name.endswith("_sum"):
                g["sum"] = val
            elif name.endswith("_count"):
                g["count"] = val
        for base, g in groups.items():
            b = g["buckets"]
            les = [x[0] for x in b]
            if les != sorted(les) or len(set(les)) != len(les):
                errs.append("%s%r: le not strictly ascending" % (fam, base))
            if not b or b[-1][0] != math.inf:
                errs.append("%s%r: no le=+Inf bucket last" % (fam, base))
            vals = [x[1] for x in b]
            if any(vals[k] > vals[k + 1] for k in range(len(vals) - 1)):
                errs.append("%s%r: buckets not cumulative %r" % (fam, base, vals))
            if g["count"] is None or g["sum"] is None:
                errs.append("%s%r: missing _sum or _count" % (fam, base))
            elif b and b[-1][1] != g["count"]:
                errs.append("%s%r: +Inf %s != _count %s" % (fam, base, b[-1][1], g["count"]))
            elif g["sum"] < 0 or (g["count"] == 0 and g["sum"] != 0):
                errs.append("%s%r: _sum %s inconsistent with _count %s"
                            % (fam, base, g["sum"], g["count"]))
            # _sum bounded by the bucket bounds: each observation lies in (prev le, le].
            if b and g["sum"] is not None:
                hi, prev_c = 0.0, 0
                for le, c in b:
                    n = c - prev_c
                    if n and le != math.inf:
                        hi += n * le
                    elif n:
                        hi = math.inf
                    prev_c = c
                if g["sum"] > hi * (1 + 1e-9) + 1e-12:
                    errs.append("%s%r: _sum %s over what the buckets allow (%s)"
                                % (fam, base, g["sum"], hi))
    return fams, errs


def flat(fams):
    """{'name{a="b",...}': value} with labels in the order given, for lookups."""
    out = {}
    for f in fams.values():
        for name, labels, val in f["samples"]:
            out[(name, tuple(sorted(labels.items())))] = val
    return out


if __name__ == "__main__":
    # curl -s localhost:8080/metrics | python3 promtext.py
    import sys
    _, e = check(sys.stdin.buffer.read())
    for x in e:
        print(x)
    sys.exit(1 if e else 0)
