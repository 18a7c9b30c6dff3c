#!/usr/bin/env python3
"""Turns the bench guest's output into the `make bench` table and JSON.

    report.py --ferrovisor LOG1 LOG2 --bare LOG1 LOG2 --image ferrovisor.bin
              [--linux linux.json | --linux-na REASON] --qemu-version TEXT
              --out bench.json

LOGs are the serial output of the bench guest (tests/guests/bench), run twice
under Ferrovisor and twice on bare QEMU at EL1, all with `-icount shift=0`.
Figures are taken from run 1; run 2 only checks that they repeat. Nothing is
estimated: a row without a measurement says n/a and why.

Exit status: 1 if a run did not finish (no BENCH-DONE line), else 0.
Standard library only.
"""

import argparse
import json
import re
import sys

# KVM/arm64 (Linux 6.12, VHE) on QEMU 10.0 TCG, -icount shift=0, 2 vCPUs:
# average instructions per operation, as quoted in issue 6.
KVM_REFERENCE = {
    "hyp_call": 1367,
    "mmio_read_vgic": 2211,
    "mmio_read_user": 7015,
    "ipi": 5242,
    "eoi": 21,
    "timer_10ms": 5457,
}
# Ferrovisor's goals from issue 6: at most this many instructions.
GOALS = {"hyp_call": 137, "mmio_read_vgic": 250, "ipi": 800, "sysreg_ctr_el0": 60}
LINUX_BOOT_GOAL = 1.15

ROW_ORDER = [
    "loop_floor", "hyp_call", "sysreg_ccsidr", "sysreg_ctr_el0", "mmio_read_user",
    "first_touch", "second_touch", "stage2_fault", "mmio_read_vgic", "ipi", "eoi",
    "timer_10ms", "fp_first_use",
]

TAG = re.compile(r"^\([^)]*\) ")
KV = re.compile(r'(\w+)=("([^"]*)"|\S+)')
STATS = ("median", "mean", "min", "max", "p10", "p90")


def parse_kv(text: str) -> dict:
    out = {}
    for m in KV.finditer(text):
        out[m.group(1)] = m.group(3) if m.group(3) is not None else m.group(2)
    return out


def parse_log(path: str) -> dict:
    """The BENCH lines of one run, and the hypervisor's footprint lines if any."""
    run = {"path": path, "info": {}, "rows": {}, "done": False, "hyp_log": {}, "fail": []}
    try:
        text = open(path, errors="replace").read()
    except OSError as e:
        run["fail"].append(str(e))
        return run
    for raw in text.splitlines():
        line = TAG.sub("", raw.strip())
        if line.startswith("BENCH-INFO "):
            run["info"] = parse_kv(line[len("BENCH-INFO "):])
        elif line.startswith("BENCH name="):
            kv = parse_kv(line[len("BENCH "):])
            run["rows"].setdefault(kv["name"], {})[kv.get("unit", "n/a")] = kv
        elif line == "BENCH-DONE":
            run["done"] = True
        elif line.startswith("FAIL:"):
            run["fail"].append(line)
        hyp = run["hyp_log"]
        m = re.search(r"memory: (\d+) MiB RAM, hypervisor image (0x[0-9a-f]+)\.\.(0x[0-9a-f]+), "
                      r"(\d+) MiB free for VMs", line)
        if m:
            hyp["ram_mib"] = int(m.group(1))
            hyp["image_in_ram_bytes"] = int(m.group(3), 16) - int(m.group(2), 16)
            hyp["free_for_vms_mib"] = int(m.group(4))
        m = re.search(r"frame allocator: (\d+) MiB free", line)
        if m:
            hyp["frame_allocator_free_mib"] = int(m.group(1))
        m = re.search(r"(VM '[^']*': \d+ MiB RAM at IPA .*)", line)
        if m:
            hyp["vm_line"] = m.group(1)
        # A line stating the stage-2 tables' size ("stage-2 tables: 12 KiB"), if the
        # hypervisor logs one; "root table(s); frame allocator: N MiB" is not one.
        if re.search(r"stage[- ]2[^;,]*?tables?[^;,]*?\d[\d,]* ?(bytes|KiB|MiB)\b", line, re.I):
            hyp.setdefault("stage2_table_lines", []).append(line)
    return run


def num(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def insns_per_tick(run: dict):
    """Under -icount shift=0 QEMU's virtual clock advances 1 ns per instruction;
    a counter tick lasts 1e9 / CNTFRQ ns."""
    f = num(run["info"].get("cntfrq"))
    return 1e9 / f if f else None


def stats(run: dict, name: str, unit: str):
    kv = run["rows"].get(name, {}).get(unit)
    if not kv:
        return None
    scale = insns_per_tick(run) if unit == "cntvct" else 1.0
    out = {k: round(num(kv[k]) * scale, 4) for k in STATS if num(kv.get(k)) is not None}
    out.update(iters=int(kv["iters"]), batch=int(kv["batch"]), raw_unit=unit)
    # The headline figure: the median, unless a counter tick spans more than one
    # instruction (CNTFRQ < 1 GHz): then single samples are quantized and only the
    # mean is exact.
    out["stat"] = "mean" if scale > 1 else "median"
    out["value"] = out.get(out["stat"])
    if kv.get("note"):
        out["note"] = kv["note"]
    return out


def na_note(run: dict, name: str):
    kv = run["rows"].get(name, {}).get("n/a")
    return kv.get("note") if kv else None


def compare_runs(a: dict, b: dict) -> list[str]:
    """What differs between two runs of the same guest: every row and boot_cntpct."""
    diffs = []
    for name in sorted(set(a["rows"]) | set(b["rows"])):
        for unit in sorted(set(a["rows"].get(name, {})) | set(b["rows"].get(name, {}))):
            x = a["rows"].get(name, {}).get(unit)
            y = b["rows"].get(name, {}).get(unit)
            if x != y:
                keys = [k for k in STATS if (x or {}).get(k) != (y or {}).get(k)]
                diffs.append(f"{name}/{unit}: " + ", ".join(
                    f"{k} {(x or {}).get(k)} vs {(y or {}).get(k)}" for k in keys))
    if a["info"].get("boot_cntpct") != b["info"].get("boot_cntpct"):
        diffs.append(f"boot_cntpct {a['info'].get('boot_cntpct')} vs "
                     f"{b['info'].get('boot_cntpct')}")
    return diffs


def determinism(runs: list) -> list[str]:
    if len(runs) < 2:
        return ["not checked: only one run"]
    if not all(r["done"] for r in runs):
        return ["not checked: a run did not finish"]
    return compare_runs(runs[0], runs[1])


def fmt(v, digits=2):
    if v is None:
        return "n/a"
    if isinstance(v, float) and v.is_integer():
        return f"{int(v):,}"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}"


def build(args) -> dict:
    fv = [parse_log(p) for p in args.ferrovisor]
    bare = [parse_log(p) for p in args.bare]
    failed = [r["path"] for r in fv + bare if not r["done"]]
    f1, b1 = fv[0], bare[0]
    floor_f = (stats(f1, "loop_floor", "cntvct") or {}).get("value")

    rows = []
    for name in ROW_ORDER:
        row = {"name": name, "unit": "instructions per operation"}
        sf, sb = stats(f1, name, "cntvct"), stats(b1, name, "cntvct")
        row["ferrovisor"] = sf
        row["bare_qemu"] = sb
        row["pmccntr"] = {"ferrovisor": stats(f1, name, "pmccntr"),
                          "bare_qemu": stats(b1, name, "pmccntr")}
        notes = []
        if name == "stage2_fault":
            ft, st = stats(f1, "first_touch", "cntvct"), stats(f1, "second_touch", "cntvct")
            if ft and st:
                extra = round(ft["value"] - st["value"], 2)
                if extra > 0.5:
                    row["ferrovisor"] = {"value": extra, "stat": ft["stat"],
                                         "derived": "first_touch - second_touch"}
                else:
                    row["na"] = ("a first touch costs what a second touch does: "
                                 "no stage-2 fault on first touch")
            else:
                row["na"] = "first_touch/second_touch not measured"
        elif sf is None:
            row["na"] = na_note(f1, name) or (
                "not measured" if f1["done"] else "the Ferrovisor run did not finish")
        if sf and sb and sb.get("value"):
            row["ratio"] = round(sf["value"] / sb["value"], 2)
        untrapped = False
        if name in ("sysreg_ccsidr", "sysreg_ctr_el0") and sf and floor_f is not None:
            if sf["value"] <= floor_f + 1:
                untrapped = True
                notes.append("not trapped in this build (costs the loop floor)")
        if name == "hyp_call":
            if sf and sf.get("note"):
                notes.append("Ferrovisor: " + sf["note"])
            if sb and sb.get("note"):
                notes.append("bare: " + sb["note"] + ", answered inside QEMU")
        if name == "mmio_read_user":
            notes.append("PL011 UARTFR; bare: QEMU's own PL011")
        elif name != "hyp_call" and sf and sf.get("note"):
            notes.append(sf["note"])
        if name == "loop_floor":
            notes.append("a nop: the measurement's own cost per op")
        row["kvm_reference"] = KVM_REFERENCE.get(name)
        if name in GOALS:
            row["goal_max"] = GOALS[name]
            med = (row["ferrovisor"] or {}).get("value")
            row["goal_met"] = None if med is None else med <= GOALS[name]
            if untrapped:
                # The goal is for the trapped fast path (HCR_EL2.TID2); an
                # untrapped read says nothing about it.
                row["goal_met"] = None
                row["goal_note"] = "fast path not exercised: the read is not trapped"
        row["notes"] = notes
        rows.append(row)

    boot = {}
    bf, bb = num(f1["info"].get("boot_cntpct")), num(b1["info"].get("boot_cntpct"))
    tf, tb = insns_per_tick(f1), insns_per_tick(b1)
    if bf is not None and bb is not None and tf and tb:
        boot = {
            "qemu_start_to_guest_main_ferrovisor": round(bf * tf),
            "qemu_start_to_guest_main_bare": round(bb * tb),
            "hypervisor_boot_instructions": round(bf * tf - bb * tb),
            "how": "CNTPCT_EL0 read first thing in the bench guest's main; under icount "
                   "it counts every instruction since QEMU started (all CPUs)",
        }

    image_bytes = None
    try:
        with open(args.image, "rb") as f:
            image_bytes = len(f.read())
    except OSError:
        pass
    hyp = f1["hyp_log"]
    footprint = {"image_file_bytes": image_bytes, "image_file": args.image}
    footprint.update({k: v for k, v in hyp.items() if k != "stage2_table_lines"})
    if "ram_mib" in hyp and "free_for_vms_mib" in hyp:
        footprint["ram_not_free_for_vms_mib"] = hyp["ram_mib"] - hyp["free_for_vms_mib"]
    footprint["stage2_tables_1gib_guest"] = (
        hyp["stage2_table_lines"] if hyp.get("stage2_table_lines")
        else "n/a (the hypervisor does not log its stage-2 table memory)")

    if args.linux:
        try:
            linux = json.load(open(args.linux))
        except (OSError, ValueError) as e:
            linux = {"status": "failed", "reason": f"no result from linux_boot.py: {e}"}
            failed.append(args.linux)
        else:
            if linux.get("status") != "ok":
                failed.append("linux boot comparison")
    else:
        linux = {"status": "n/a", "reason": args.linux_na or "not run"}

    return {
        "schema": 1,
        "qemu": args.qemu_version,
        "icount": "shift=0,sleep=off",
        "unit": "instructions per operation: CNTVCT_EL0 ticks x 1e9/CNTFRQ (icount shift=0: "
                "1 instruction = 1 ns of guest time); per op = one batch / batch size",
        "cntfrq_hz": {"ferrovisor": num(f1["info"].get("cntfrq")),
                      "bare_qemu": num(b1["info"].get("cntfrq"))},
        "pmu": {"ferrovisor": f1["info"].get("pmu_note") or f1["info"].get("pmu"),
                "bare_qemu": b1["info"].get("pmu_note") or b1["info"].get("pmu")},
        "rows": rows,
        "determinism": {
            "ferrovisor": determinism(fv),
            "bare_qemu": determinism(bare),
        },
        "boot": boot,
        "footprint": footprint,
        "linux_boot": linux,
        "runs": {"ferrovisor": [r["path"] for r in fv], "bare_qemu": [r["path"] for r in bare]},
        "failed_runs": failed,
        "failures": [x for r in fv + bare for x in r["fail"]],
    }


def table(d: dict) -> str:
    out = []
    w = out.append
    w(f"Ferrovisor micro-benchmarks ({d['qemu']}, TCG, -icount {d['icount']})")
    freq = d["cntfrq_hz"]["ferrovisor"] or d["cntfrq_hz"]["bare_qemu"]
    w(f"unit: instructions per operation = CNTVCT ticks x {fmt(1e9 / freq) if freq else '?'}"
      f" (CNTFRQ {fmt(freq)} Hz; icount shift=0 runs 1 instruction per ns);")
    w("      each op runs in an unrolled batch; the figure includes 2 instructions of counter")
    w("      reads per batch (loop_floor shows them); spread = p10..p90 of the samples")
    stat = next((r["ferrovisor"]["stat"] for r in d["rows"]
                 if r.get("ferrovisor") and "stat" in r["ferrovisor"]), "median")
    if stat == "mean":
        w("      figures are MEANS: one counter tick spans several instructions, so single")
        w("      samples are quantized (use -cpu max: its counter runs at 1 GHz)")
    else:
        w("      figures are medians over the samples")
    w("")
    hdr = ("row", "Ferrovisor", "p10..p90", "bare QEMU", "ratio", "KVM/arm64", "goal")
    rows = []
    for r in d["rows"]:
        f, b = r.get("ferrovisor"), r.get("bare_qemu")
        if r.get("na") and not f:
            fcol, spread = f"n/a ({r['na']})", ""
        else:
            fcol = fmt(f.get("value"))
            spread = (f"{fmt(f['p10'])}..{fmt(f['p90'])}" if "p10" in f
                      else f.get("derived", ""))
        bcol = fmt(b["value"]) if b else ("n/a" if not r.get("na") else "")
        ratio = f"{r['ratio']:,.1f}x" if r.get("ratio") is not None else ""
        kvm = fmt(r["kvm_reference"]) if r.get("kvm_reference") else ""
        goal = ""
        if "goal_max" in r:
            state = {True: "met", False: "missed", None: "-"}[r["goal_met"]]
            if r.get("goal_note"):
                state = "not measured"
            goal = f"<= {r['goal_max']} ({state})"
        rows.append((r["name"], fcol, spread, bcol, ratio, kvm, goal, r["notes"]))
    widths = [max([len(hdr[i])] + [len(x[i]) for x in rows if not x[1].startswith("n/a (")])
              for i in range(7)]
    line = "  ".join(h.ljust(widths[i]) for i, h in enumerate(hdr))
    w(line.rstrip())
    w("-" * len(line.rstrip()))
    for x in rows:
        if x[1].startswith("n/a ("):
            w(f"{x[0].ljust(widths[0])}  {x[1]}" + (f"  {x[5]} (KVM)" if x[5] else "")
              + (f"  goal {x[6]}" if x[6] else ""))
        else:
            w("  ".join(str(x[i]).ljust(widths[i]) for i in range(7)).rstrip())
        for n in x[7]:
            w(f"{'':{widths[0]}}    - {n}")
    w("")
    pm = [(r["name"], r["pmccntr"]["bare_qemu"]["value"]) for r in d["rows"]
          if r["pmccntr"]["bare_qemu"]]
    w("PMCCNTR_EL0 (cycles per op; QEMU counts 1 cycle per ns, so = instructions under icount):")
    w(f"  Ferrovisor: n/a ({d['pmu']['ferrovisor'] or 'no data'})" if not any(
        r["pmccntr"]["ferrovisor"] for r in d["rows"]) else "  Ferrovisor: see bench.json")
    w("  bare QEMU:  " + (", ".join(f"{n} {fmt(v)}" for n, v in pm) if pm
                          else f"n/a ({d['pmu']['bare_qemu']})"))
    w("")
    for env, diffs in d["determinism"].items():
        label = "Ferrovisor" if env == "ferrovisor" else "bare QEMU"
        if diffs and diffs[0].startswith("not checked"):
            w(f"determinism: {label}: {diffs[0]}")
        elif diffs:
            w(f"determinism: {label} runs 1 and 2 DIFFER: " + "; ".join(diffs))
        else:
            w(f"determinism: {label} runs 1 and 2 identical (every row and boot count)")
    w("")
    b = d["boot"]
    if b:
        w(f"hypervisor boot: {fmt(b['hypervisor_boot_instructions'])} instructions "
          f"(QEMU start -> guest main: {fmt(b['qemu_start_to_guest_main_ferrovisor'])} under "
          f"Ferrovisor, {fmt(b['qemu_start_to_guest_main_bare'])} bare)")
    fp = d["footprint"]
    w("footprint:")
    w(f"  hypervisor image file      {fmt(fp['image_file_bytes'])} bytes ({fp['image_file']})")
    if "image_in_ram_bytes" in fp:
        w(f"  hypervisor in RAM          {fmt(fp['image_in_ram_bytes'])} bytes "
          "(image + BSS with the heap + stacks: the boot log's image range)")
    if "ram_not_free_for_vms_mib" in fp:
        w(f"  RAM not free for VMs       {fp['ram_not_free_for_vms_mib']} MiB of "
          f"{fp['ram_mib']} MiB (boot log: {fp['free_for_vms_mib']} MiB free for VMs; "
          "includes the device tree and boot bundle)")
    w("  hypervisor heap in use     n/a (the hypervisor does not log it)")
    if "frame_allocator_free_mib" in fp:
        w(f"  frame allocator free       {fp['frame_allocator_free_mib']} MiB "
          "(boot log, before any VM is built)")
    if "vm_line" in fp:
        w(f"  {fp['vm_line']}")
    st = fp["stage2_tables_1gib_guest"]
    w(f"  stage-2 tables, 1 GiB guest {st if isinstance(st, str) else '; '.join(st)}")
    w("")
    lx = d["linux_boot"]
    w("Linux boot (same kernel/initramfs/-cpu/-smp, A/B/A/B):")
    if lx.get("status") == "n/a":
        w(f"  n/a ({lx['reason']})")
    else:
        fv, di = lx.get("ferrovisor", {}), lx.get("direct", {})
        def secs(v, digits):
            return "n/a" if v is None else f"{v:,.{digits}f} s"

        w(f"  guest uptime at userspace (icount guest time): Ferrovisor "
          f"{secs(fv.get('uptime_s_median'), 3)}, direct {secs(di.get('uptime_s_median'), 3)}, "
          f"ratio {fmt(lx.get('uptime_s_ratio'), 3)} (goal <= {LINUX_BOOT_GOAL})")
        w(f"  kernel printk time of 'Run /init as init process' (icount, 1 us): Ferrovisor "
          f"{secs(fv.get('run_init_s_median'), 6)}, direct {secs(di.get('run_init_s_median'), 6)}, "
          f"ratio {fmt(lx.get('run_init_s_ratio'), 3)}")
        w("    (both count from the guest kernel's clock start: the kernel's earliest boot and "
          "the hypervisor's own boot are not in them)")
        for name in ("ferrovisor", "direct"):
            vals = lx.get(name, {}).get("uptime_s_all") or []
            inits = [v for v in lx.get(name, {}).get("run_init_s_all") or [] if v]
            if len(set(vals)) > 1 or len(set(inits)) > 1:
                spread = (f" (Run /init spread {100 * (max(inits) - min(inits)) / min(inits):.4f}%)"
                          if inits else "")
                w(f"    {name} boots differ: uptime {vals}, Run /init {inits}{spread}")
        w(f"  wall clock QEMU start -> userspace (noisy: shared machine): Ferrovisor "
          f"{secs(fv.get('wall_s_median'), 2)}, direct {secs(di.get('wall_s_median'), 2)}, "
          f"ratio {fmt(lx.get('wall_s_ratio'), 3)}")
        w(f"  boots reaching userspace: Ferrovisor {fv.get('reached')}/{fv.get('boots')}, "
          f"direct {di.get('reached')}/{di.get('boots')}"
          + (" (after a failed Ferrovisor boot the others are skipped)"
             if fv.get("boots", 0) < di.get("boots", 0) else ""))
        for name in ("ferrovisor", "direct"):
            for r in lx.get("runs", {}).get(name, []):
                if not r.get("reached"):
                    w(f"  {name} #{r.get('round')}: {r.get('error')}")
        if lx.get("reason"):
            w(f"  {lx['reason']}")
    if d["failed_runs"]:
        w("")
        w("FAILED: " + ", ".join(d["failed_runs"]))
        for x in d["failures"]:
            w(f"  {x}")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ferrovisor", nargs="+", required=True)
    ap.add_argument("--bare", nargs="+", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--linux")
    ap.add_argument("--linux-na")
    ap.add_argument("--qemu-version", default="QEMU")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    d = build(args)
    text = table(d)
    d["table"] = text
    with open(args.out, "w") as f:
        json.dump(d, f, indent=2)
    print(text)
    return 1 if d["failed_runs"] else 0


if __name__ == "__main__":
    sys.exit(main())
