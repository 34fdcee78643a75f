#!/usr/bin/env python3
"""Regenerates the tables of docs/RESULTS.md (and the full-set phase table of docs/BENCHMARKS.md) from the run
directories under runs/ (never by hand).

Each table sits between `<!-- BEGIN name -->` and `<!-- END name -->` markers in its document;
only those blocks are rewritten. In the compare blocks (compare, phase-two) only the sections of jobs whose runs are on
this machine are regenerated; the others keep their text. Usage: experiments/report.py [--only BLOCK ...]  (from anywhere)."""
import glob, json, os, re, shutil, statistics, sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.chdir(root)

def load(path):
    with open(path) as f:
        return json.load(f)

def fmt(x, digits=3):
    if x is None or (isinstance(x, float) and x != x):
        return "–"
    return f"{x:.{digits}g}"

def latest(pattern):
    runs = sorted(glob.glob(pattern))
    return runs[-1] if runs else None

def certificate_of(run):
    files = sorted(glob.glob(os.path.join(run, "certificates", "*.json")))
    return load(files[-1]) if files else None

def ec_fc():
    rows = ["| dataset | n | activation | narrow | wide m | init (default) | σ_min ≥ (init) | after Phase I (τ=100, SGD+momentum η=0.001) | σ_min ≥ (switch) | SPEC §5 witness (m = n−1) | σ_min ≥ (witness) |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    cases = sorted({re.sub(r"^(init|phase1|witness)-", "", os.path.basename(d).rsplit("-", 2)[0])
                    for d in glob.glob("runs/ec-fc/*-*-*") if os.path.isdir(d)})
    for case in sorted(cases, key=case_key):
        m = re.match(r"(.+)-n(\d+)-(\w+)-w(\d+)-m(\d+)", case)
        if not m:
            continue
        dataset, n, act, narrow, wide = m.group(1), int(m.group(2)), m.group(3), m.group(4), int(m.group(5))
        init = latest(f"runs/ec-fc/init-{case}-*")
        phase1 = latest(f"runs/ec-fc/phase1-{case}-*")
        witness = latest(f"runs/ec-fc/witness-{dataset}-n{n}-{act}-w{narrow}.json")
        ci = certificate_of(init) if init else None
        cp = certificate_of(phase1) if phase1 else None
        cw = load(witness) if witness and wide == 2 * n else None
        phase1_text = cp["Verdict"] if cp else "–"
        if phase1 and not cp:
            err = f"runs/ec-fc/phase1-{case}.stderr"
            failure = [l for l in open(err)] if os.path.exists(err) else []
            failure = [l for l in failure if "error" in l]
            phase1_text = ("run failed: " + failure[-1].split("error:", 1)[-1].strip()[:90]) if failure else "run failed (no certificate)"
        rows.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            dataset, n, act, narrow, wide,
            verdict_route(ci), fmt(ci["SigmaMinLower"]) if ci and ci["Verdict"] == "Certified" else "–",
            verdict_route(cp) if cp else phase1_text, fmt(cp["SigmaMinLower"]) if cp and cp["Verdict"] == "Certified" else "–",
            verdict_route(cw), fmt(cw["SigmaMinLower"]) if cw and cw["Verdict"] == "Certified" else "–"))
    return "\n".join(rows)

def verdict_route(c):
    """The verdict and the route whose verdict stands (certificates before issue #15 have no Route: Gram);
    a refutation is exact on either route and carries no mark."""
    if not c:
        return "–"
    return c["Verdict"] if c["Verdict"] == "Refuted" else f"{c['Verdict']} ({c.get('Route', 'Gram')})"

def case_key(c):
    m = re.match(r"(.+)-n(\d+)-(\w+)-w(\d+)(?:-m(\d+))?$", c)
    return (m.group(1), int(m.group(2)), m.group(3), int(m.group(4)), -int(m.group(5) or 0)) if m else (c,)

STAGES = {"init": "init", "phase1": "switch", "witness": "witness (m = n−1)", "init64": "init, float64 network"}

def ec_fc_certificates():
    """(case, stage, certificate) for every certificate of runs/ec-fc (init, switch, witness) and of
    runs/ec-fc-float64 (init with the network in float64, experiments/ec-fc-float64.sh); the latest run of each."""
    out = []
    for run in sorted(glob.glob("runs/ec-fc/init-*-*") + glob.glob("runs/ec-fc/phase1-*-*") + glob.glob("runs/ec-fc-float64/init64-*-*")):
        if not os.path.isdir(run):
            continue
        stage, case = os.path.basename(run).split("-", 1)
        case = case.rsplit("-", 2)[0]
        if latest(f"{os.path.dirname(run)}/{stage}-{case}-*") != run:
            continue
        c = certificate_of(run)
        if c:
            out.append((case, stage, c))
    for path in sorted(glob.glob("runs/ec-fc/witness-*.json")):
        out.append((os.path.basename(path)[len("witness-"):-len(".json")], "witness", load(path)))
    return sorted(out, key=lambda t: (case_key(t[0]), list(STAGES).index(t[1])))

U64 = 2.0 ** -53

def ec_fc_margins():
    """Every ec-fc certificate the float64 Gram route could not decide, and every float64-network certificate:
    σ_min/σ_max against both routes' reach. Certified: the ratio of the two rigorous bounds. Otherwise an estimate,
    σ_min ≈ 2^e/‖X‖₂ with X = fl(R̂⁻¹) of the orthogonal route (a numerically singular R̂ gives ‖X‖ ≈ 1/(u·‖R̂‖): the
    estimate is then only an upper-bound-like noise level). √(n·u): where the Gram route stops (it squares the
    condition number); n·u: the backward error of any float64 factorisation, the orthogonal route's floor."""
    rows = ["| case | stage | verdict (route) | σ_min ≥ | σ_max ≤ | σ_min/σ_max ≥ (certified) | σ_min/σ_max ≈ (estimate 2^e/‖X‖₂/σ_max) | √(n·u) | n·u | ‖E‖ ≤ (of 2^(−e)·Φ̃) | ‖R̂X − I‖ ≤ |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for case, stage, c in ec_fc_certificates():
        if stage != "init64" and c.get("Route", "Gram") == "Gram" and c["Verdict"] != "Inconclusive":
            continue
        n, t = c["Subject"]["Rows"], c["Terms"]
        certified = c["Verdict"] == "Certified"
        ratio = c["SigmaMinLower"] / c["SigmaMaxUpper"] if certified else None
        x = t.get("QrInverseNormUpper", 0)
        tried = x != 0 or t.get("QrInverseResidualUpper", 0) != 0
        estimate = (2.0 ** t["ScaleExponent"] / x / c["SigmaMaxUpper"]) if tried and x > 0 and not certified else None
        rows.append(f"| {case} | {STAGES[stage]} | {verdict_route(c)} | {fmt(c['SigmaMinLower']) if certified else '–'} | "
                    f"{fmt(c['SigmaMaxUpper'])} | {fmt(ratio, 2)} | {fmt(estimate, 2)} | {fmt((n * U64) ** 0.5, 2)} | {fmt(n * U64, 2)} | "
                    f"{fmt(t.get('QrResidualUpper')) if tried else '–'} | {fmt(t.get('QrInverseResidualUpper')) if tried else '–'} |")
    return "\n".join(rows) if len(rows) > 2 else "_every ec-fc certificate was decided by the Gram route_"

def ec_fc_summary():
    """Verdicts per stage and deciding route over the latest ec-fc (and ec-fc-float64) certificates; a Phase I run
    that left no certificate counts as failed."""
    rows = ["| stage | runs | Certified (Gram route) | Certified (orthogonal route) | Inconclusive | Refuted | run failed (no certificate) |",
            "|---|---|---|---|---|---|---|"]
    certificates = ec_fc_certificates()
    failed = {"phase1": 0}
    for run in glob.glob("runs/ec-fc/phase1-*-*"):
        case = os.path.basename(run).split("-", 1)[1].rsplit("-", 2)[0]
        if os.path.isdir(run) and latest(f"runs/ec-fc/phase1-{case}-*") == run and not certificate_of(run):
            failed["phase1"] += 1
    for stage, name in STAGES.items():
        cs = [c for _, s, c in certificates if s == stage]
        count = lambda v, r=None: sum(1 for c in cs if c["Verdict"] == v and (r is None or c.get("Route", "Gram") == r))
        total = len(cs) + failed.get(stage, 0)
        if total:
            rows.append(f"| {name} | {total} | {count('Certified', 'Gram')} | {count('Certified', 'Orthogonal')} | "
                        f"{count('Inconclusive')} | {count('Refuted')} | {failed.get(stage, 0)} |")
    return "\n".join(rows)

def ec_fc_phase1_failures():
    """Phase I runs of ec-fc that ended Refuted at the switch or left no certificate: the loss trajectory
    (metrics.jsonl) and, when refuted, the certificate's exact reason and how much of Σ‖φ̃_i‖² the bias column
    (exactly n) accounts for."""
    rows = ["| case | switch verdict (exact reason) | loss at step 0 | largest logged loss (step) | last logged loss (step) | Σ‖φ̃_i‖² ≤ (bias column: n) | σ_max(Φ̃) ≤ (σ_max at init ≤) |",
            "|---|---|---|---|---|---|---|"]
    for run in sorted(glob.glob("runs/ec-fc/phase1-*-*"), key=lambda r: case_key(os.path.basename(r).split("-", 1)[1].rsplit("-", 2)[0])):
        case = os.path.basename(run).split("-", 1)[1].rsplit("-", 2)[0]
        if not os.path.isdir(run) or latest(f"runs/ec-fc/phase1-{case}-*") != run:
            continue
        c = certificate_of(run)
        if c and c["Verdict"] != "Refuted":
            continue
        losses = []
        if os.path.exists(os.path.join(run, "metrics.jsonl")):
            for line in open(os.path.join(run, "metrics.jsonl")):
                r = json.loads(line)
                if "loss" in r and "iteration" in r:
                    losses.append((r["iteration"], r["loss"]))
        if not losses:
            continue
        top = max(losses, key=lambda t: t[1] if t[1] == t[1] else float("inf"))
        init = latest(f"runs/ec-fc/init-{case}-*")
        ci = certificate_of(init) if init else None
        if c:
            verdict = f"Refuted ({c['Reason']})"
            t = c["Terms"]
            norms = f"{fmt(t['SquaredNormSumUpper'] * 4.0 ** t['ScaleExponent'], 4)} ({c['Subject']['Rows']})"
            smax = f"{fmt(c['SigmaMaxUpper'])} ({fmt(ci['SigmaMaxUpper']) if ci else '–'})"
        else:
            err = f"runs/ec-fc/phase1-{case}.stderr"
            failure = [l for l in open(err) if "error" in l] if os.path.exists(err) else []
            verdict = "no certificate: " + (failure[-1].split("error:", 1)[-1].strip() if failure else "run failed")
            norms, smax = "–", f"– ({fmt(ci['SigmaMaxUpper']) if ci else '–'})"
        rows.append(f"| {case} | {verdict} | {fmt(losses[0][1])} | {fmt(top[1])} ({top[0]}) | {fmt(losses[-1][1])} ({losses[-1][0]}) | {norms} | {smax} |")
    return "\n".join(rows) if len(rows) > 2 else "_every Phase I run reached a certificate that is not Refuted_"

def ec_resnet():
    rows = ["| dataset | k | n | taps | features m | verdict | σ_min ≥ | σ_max ≤ | certificate time (s) | process wall (s) | peak RSS (MiB) |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    def order(p):
        m = re.match(r"(.+)-k([\d.]+)-n(\d+)-(\w+)", os.path.basename(p)[:-5])
        return (m.group(1), float(m.group(2)), int(m.group(3)), m.group(4))
    for done in sorted(glob.glob("runs/ec-resnet/*.done"), key=order):
        case = os.path.basename(done)[:-5]
        m = re.match(r"(.+)-k([\d.]+)-n(\d+)-(\w+)", case)
        run = latest(f"runs/ec-resnet/{case}-*")
        c = certificate_of(run) if run else None
        timing = open(f"runs/ec-resnet/{case}.time").read() if os.path.exists(f"runs/ec-resnet/{case}.time") else ""
        wall = re.search(r"wall ([\d.]+) s", timing)
        rss = re.search(r"peak RSS (\d+) KB", timing)
        rows.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            m.group(1), m.group(2), m.group(3), "stages layer1–4" if m.group(4) == "stages" else "pooled (flatten)",
            c["Subject"]["Features"] if c else "–", c["Verdict"] if c else "failed",
            fmt(c["SigmaMinLower"]) if c and c["Verdict"] == "Certified" else "–", fmt(c["SigmaMaxUpper"]) if c else "–",
            fmt(c["ElapsedSeconds"]) if c else "–", wall.group(1) if wall else "–",
            f"{int(rss.group(1)) / 1024:.0f}" if rss else "–"))
    return "\n".join(rows)

def demote(markdown):
    """compare.md's own headings sit below RESULTS.md's section headings."""
    return "\n".join("####" + line if line.startswith("#") else line for line in markdown.splitlines())

def sections(body):
    """The per-job sections of a compare block, by job name (each starts with its "#### `name`" heading)."""
    return {m.group(1): part.strip() + "\n" for part in re.split(r"(?m)^(?=#### `)", body)
            for m in [re.match(r"#### `([^`]+)`", part)] if m}

def stored_block(block):
    """The body of `block` as it stands in the document being rewritten (the loop's `text`), or None without markers."""
    current = re.search(rf"<!-- BEGIN {block} -->\n(.*?)<!-- END {block} -->", text, re.S)
    return current.group(1) if current else None

def compare(spool="runs/spool", script="experiments/compare.sh", jobs="experiments/compare", block="compare"):
    """The block's job sections: regenerated for every job whose run is on this machine; a job whose run is not keeps
    the section already in docs/RESULTS.md (generated where it ran), so regenerating on another machine loses nothing."""
    blocks = {}
    for result in sorted(glob.glob(f"{spool}/done/*.result.json")):
        name = os.path.basename(result)[: -len(".result.json")]
        r = load(result)
        run = r.get("RunDirectory") or r.get("runDirectory")
        md = os.path.join(run, "compare.md") if run else None
        if md and os.path.exists(md):
            rel = os.path.relpath(run, root)
            os.makedirs("docs/results", exist_ok=True)
            images = []
            for source, caption in [(os.path.join(run, "plots", "loss-all-runs.png"), "loss curves, all runs (switch marked)"),
                                    (os.path.join(run, "plots", "test-error.png"), "test error, mean ± std"),
                                    (os.path.join(run, "runs", "two-phase-seed0", "plots", "sigma-min.png"), "σ_min(Φ̃_t) over Phase II, seed 0")]:
                if os.path.exists(source):
                    target = f"docs/results/{name}-{os.path.basename(source)}"
                    shutil.copyfile(source, target)
                    images.append(f"![{caption}]({os.path.relpath(target, 'docs')})")
            blocks[name] = (f"#### `{name}`\n\nCommand: `{script} {name}` (job `{jobs}/{name}.json`); run directory `{rel}`.\n\n"
                            + demote(open(md).read().strip()) + "\n\n" + " ".join(images) + "\n")
    current = stored_block(block)
    kept = sections(current) if current is not None else {}
    merged = {**kept, **blocks}
    return "\n".join(merged[k] for k in sorted(merged)) if merged else "_no compare job has finished yet_"

def rewrite(text, name, body):
    pattern = re.compile(rf"(<!-- BEGIN {name} -->\n).*?(<!-- END {name} -->)", re.S)
    if not pattern.search(text):
        sys.exit(f"the document lacks the markers for {name}")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)

def witness_softplus():
    rows = ["| n | m (wide) | verdict | route | σ_min(Φ̃) ≥ | σ_max(Φ̃) ≤ | certificate time (s) | `rf prove` wall (s) | peak RSS (GiB) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for path in sorted(glob.glob("runs/witness-softplus/n*.json"), key=lambda p: int(re.sub(r"\D", "", os.path.basename(p)))):
        c = load(path)
        n = c["Subject"]["Rows"]
        stem = path[: -len(".json")]
        wall = float(open(stem + ".wall-ms").read()) / 1000 if os.path.exists(stem + ".wall-ms") else None
        rss = int(open(stem + ".rss").read().split()[-1]) / 2**20 if os.path.exists(stem + ".rss") else None
        rows.append(f"| {n} | {c['Subject']['Features']} | {c['Verdict']} | {c.get('Route', 'Gram')} | {fmt(c['SigmaMinLower'], 4)} | "
                    f"{fmt(c['SigmaMaxUpper'], 4)} | {fmt(c['ElapsedSeconds'], 3)} | {fmt(wall, 3)} | {fmt(rss, 3)} |")
    return "\n".join(rows) if len(rows) > 2 else "_no witness has been certified yet_"

def case_and_n(row):
    """The key of a full-set table row: its first two cells, case and n (n as a number, for the order)."""
    case, n = (c.strip() for c in row.strip().strip("|").split("|")[:2])
    return case, int(n) if n.isdigit() else 0

def kept_rows(block, header, fresh):
    """The rows of the document's current table `block` whose case and n no fresh row replaces (a machine that lacks
    some runs' files keeps their rows as they were written). A row stays until a run of the same case and n replaces
    it, or it is deleted from the document by hand. A stored table with another header (a column added or renamed)
    stops the report: its old rows would not fit the new columns."""
    lines = (stored_block(block) or "").splitlines()
    if not lines or not lines[0].startswith("|"):
        return []   # no table yet (the placeholder sentence)
    if lines[0] != header[0]:
        sys.exit(f"the stored {block} table has other columns than this report writes: regenerate it from all its runs, "
                 f"or update its rows by hand first")
    replaced = {case_and_n(r) for r in fresh}
    return [r for r in lines[2:] if r.startswith("|") and case_and_n(r) not in replaced]

def merged_table(block, header, fresh, empty):
    rows = sorted(kept_rows(block, header, fresh) + fresh, key=case_and_n)
    return "\n".join(header + rows) if rows else empty

def full_set():
    rows = ["| case | n | m' | verdict | route | σ_min(Φ̃) ≥ | σ_max(Φ̃) ≤ | γ indices h_G, h_C | shift c | error terms | wall (s) | segments | peak RSS (GiB) | reason |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for path in sorted(glob.glob("runs/full-set/*.json")):
        c = load(path)
        t = c["Terms"]
        stem = path[: -len(".json")]
        wall, rss, segments = (open(stem + ".time").read().split() + [None] * 3)[:3] if os.path.exists(stem + ".time") else (None, None, None)
        case = re.sub(r"-n\d+$", "", os.path.basename(stem))
        # h of γ_h (accumulation) and γ'_h (Cholesky): 0 in certificates made before they were recorded (then m', n + 1)
        hg = t.get("AccumulationGammaIndex") or c["Subject"]["Columns"]
        hc = t.get("CholeskyGammaIndex") or c["Subject"]["Rows"] + 1
        errors = t["ShiftRoundingError"] + t["CholeskyBackwardError"] + t["AccumulationError"] if t["Shift"] > 0 else None
        rows.append(f"| {case} | {c['Subject']['Rows']} | {c['Subject']['Columns']} | {c['Verdict']} | {c.get('Route', 'Gram')} | "
                    f"{fmt(c['SigmaMinLower'], 4)} | {fmt(c['SigmaMaxUpper'], 4)} | {hg}, {hc} | {fmt(t['Shift'] or None, 3)} | {fmt(errors, 3)} | "
                    f"{fmt(float(wall) if wall else None, 4)} | "
                    f"{segments or '–'} | {fmt(int(rss) / 2**20 if rss else None, 3)} | {c['Reason']} |")
    return merged_table("full-set", rows[:2], rows[2:], "_no whole-training-set certificate has finished yet (`experiments/full-set.sh`)_")

def full_set_phases():
    """Phase by phase, from each finished case's log (the last segment: the one that finished the certificate)."""
    rows = ["| case | n | segments | Gram: tiles computed / read back | Gram | σ_max trial(s) | λ_min estimate's factorisation | shifted test(s) | rest after the Gram (scan, Lanczos, inverse iteration, products) | phases of the last segment | wall, all segments | peak RSS (GiB) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    # a line is either the host's log ("[hh:mm:ss INF] Handler: …") or its console copy ("rf certify: …"); one of the two
    # is read per segment (the log's when present), so nothing is counted twice
    phase = re.compile(r"(?:INF\] \w+: |^rf [a-z ]+: )(.+?): (\d+) tiles \((\d+) computed, (\d+) read back\) in ([0-9.]+) s, ([0-9.]+) GFLOP/s")
    after = re.compile(r"(?:INF\] \w+: |^rf [a-z ]+: )after the Gram: ([0-9.]+) s")
    for path in sorted(glob.glob("runs/full-set/*.json")):
        stem = path[: -len(".json")]
        if not os.path.exists(stem + ".log"):
            continue
        lines = open(stem + ".log", errors="replace").read().splitlines()
        # segments start where the engine announces the certificate ("tiled certificate: n = …", logged by every run)
        starts = [i for i, l in enumerate(lines) if "tiled certificate: n = " in l and ("INF]" in l or not any("INF]" in k for k in lines))]
        last = lines[starts[-1]:] if starts else lines
        if any("INF]" in l for l in last):
            last = [l for l in last if "INF]" in l]
        gram, trials, lmin, shifted, rest = None, [], None, [], None
        for l in last:
            m = phase.search(l)
            if m:
                label, secs, rate = m.group(1), float(m.group(5)), float(m.group(6))
                cell = (secs, rate, int(m.group(3)), int(m.group(4)))
                if label == "gram": gram = cell
                elif "σ_max bound" in label: trials.append(cell)
                elif "λ_min estimate" in label: lmin = cell
                elif label.startswith("cholesky fl G −"): shifted.append(cell)
                elif label == "estimates": rest = secs   # logs before 2026-12-03: every phase after the Gram
                continue
            m = after.search(l)
            if m: rest = float(m.group(1))
        factor_secs = sum(c[0] for c in trials + shifted) + (lmin[0] if lmin else 0.0)
        other = rest - factor_secs if rest is not None else None
        total = (gram[0] if gram else 0.0) + (rest or 0.0)
        cell = lambda c: f"{c[0]:.0f} s ({c[1]:.1f} GFLOP/s)" if c else "–"
        cells = lambda cs: " + ".join(cell(c) for c in cs) if cs else "–"
        wall, rss, segments = (open(stem + ".time").read().split() + [None] * 3)[:3] if os.path.exists(stem + ".time") else (None, None, None)
        c = load(path)
        rows.append(f"| {re.sub(r'-n[0-9]+$', '', os.path.basename(stem))} | {c['Subject']['Rows']} | {segments or '–'} | "
                    f"{f'{gram[2]} / {gram[3]}' if gram else '–'} | {cell(gram)} | {cells(trials)} | {cell(lmin)} | {cells(shifted)} | "
                    f"{f'{other:.0f} s' if other is not None else '–'} | {total:.0f} s | {fmt(float(wall) if wall else None, 5)} s | "
                    f"{fmt(int(rss) / 2**20 if rss else None, 3)} |")
    return merged_table("full-set-phases", rows[:2], rows[2:], "_no whole-training-set certificate has finished yet (`experiments/full-set.sh`)_")

def phase_two():
    return compare("runs/spool-phase-two", "experiments/phase-two.sh", "experiments/phase-two", "phase-two")

def phase_two_full():
    return compare("runs/spool-phase-two-full", "experiments/phase-two-full.sh", "experiments/phase-two-full", "phase-two-full")

# `--only NAME …` rewrites only those blocks (the others keep their text when their runs are not on this machine)
only = sys.argv[sys.argv.index("--only") + 1:] if "--only" in sys.argv else None
blocks = {"docs/RESULTS.md": [("ec-fc", ec_fc), ("ec-fc-margins", ec_fc_margins), ("ec-fc-summary", ec_fc_summary), ("ec-fc-phase1-failures", ec_fc_phase1_failures),
                              ("ec-resnet", ec_resnet), ("compare", compare), ("phase-two", phase_two), ("phase-two-full", phase_two_full), ("witness-softplus", witness_softplus), ("full-set", full_set)],
          "docs/BENCHMARKS.md": [("full-set-phases", full_set_phases)]}
for path, makers in blocks.items():
    chosen = [(name, make) for name, make in makers if only is None or name in only]
    if not chosen:
        continue
    text = open(path).read()
    for name, make in chosen:
        text = rewrite(text, name, make())
    open(path, "w").write(text)
    print(f"{path} regenerated ({', '.join(name for name, _ in chosen)})")
