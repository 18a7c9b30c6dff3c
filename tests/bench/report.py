#!/usr/bin/env python3
"""Turns the bench guest's output into the `make bench` table, JSON and README section.

    report.py --runs CPU FV_LOG1 FV_LOG2 BARE_LOG1 BARE_LOG2  [--runs ...]
              [--boot-1cpu LOG] --image ferrovisor.bin
              [--linux linux.json | --linux-na REASON] --qemu-version TEXT
              --out bench.json [--readme README.md]

Each --runs names a QEMU CPU model and the serial output of the bench guest
(tests/guests/bench) run twice under Ferrovisor and twice on bare QEMU at EL1 with
that CPU, all with `-icount shift=0`. The first --runs is the main configuration
(every row); later ones add the rows whose trap depends on the CPU model (the
cache-ID registers: TID4 with FEAT_EVT, TID2 without). Figures come from run 1;
run 2 only checks that they repeat. --boot-1cpu is a Ferrovisor run with one CPU
and one vCPU, stopped after the guest's first line: the hypervisor's boot without
a second CPU to wait for. Nothing is estimated: a row without a measurement says
n/a and why.

--readme rewrites the part of README.md between `<!-- bench:begin -->` and
`<!-- bench:end -->` with the table as markdown; nothing else in the file changes.

Exit status: 1 if a run did not finish (no BENCH-DONE line), the two runs of a
configuration differ in a figure the table shows (median, p10, p90, boot count),
the Linux comparison failed, or the README could not be updated, else 0. The README is left alone when
a benchmark run did not finish. Standard library only.
"""

import argparse
import datetime
import json
import os
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
# Ferrovisor's goals from issue 6: at most this many instructions. The CTR_EL0 goal
# is for the trapped fast path (HCR_EL2.TID2).
GOALS = {"hyp_call": 137, "mmio_read_vgic": 250, "ipi": 800, "sysreg_ctr_el0": 60}
LINUX_BOOT_GOAL = 1.15

ROW_ORDER = [
    "loop_floor", "hyp_call", "sysreg_ccsidr", "sysreg_ctr_el0", "mmio_read_user",
    "mmio_read_vgic", "eoi", "timer_10ms", "timer_10ms_wfi", "ipi", "ipi_send",
    "first_touch", "second_touch", "stage2_fault", "fp_first_use",
]
# Rows repeated from the later --runs configurations (their trap differs by CPU).
CPU_MODEL_ROWS = ("sysreg_ccsidr", "sysreg_ctr_el0")

# Fixed notes, by row (the guest's own note is added where it says more).
ROW_NOTES = {
    "loop_floor": "a `nop`: what the measurement itself costs per op",
    "hyp_call": "SMCCC_VERSION over HVC (bare: QEMU's built-in PSCI_VERSION)",
    "mmio_read_user": "PL011 UARTFR (emulated by Ferrovisor; bare: QEMU's PL011)",
    "mmio_read_vgic": "GICD_IIDR (Ferrovisor's vGIC; bare: QEMU's GICv3)",
    "eoi": "ICC_EOIR1_EL1 of an acknowledged SGI, one per sample (+2 window instructions); "
           "KVM's row writes the spurious INTID 1023",
    "timer_10ms": "virtual timer, deadline 10 ms ahead, guest spinning: deadline to handler entry",
    "timer_10ms_wfi": "the same with the guest in WFI (the hypervisor's idle path)",
    "ipi": "SGI from vCPU 0 to vCPU 1 (in WFI): send to handler entry; KVM's row runs "
           "until the sender sees the handler's flag",
    "ipi_send": "the trapped ICC_SGI1R_EL1 write as the sender sees it",
    "first_touch": "one load per fresh 4 KiB page",
    "second_touch": "the same pages again",
}

TAG = re.compile(r"^\([^)]*\) ")
KV = re.compile(r'(\w+)=("([^"]*)"|\S+)')
STATS = ("median", "mean", "min", "max", "p10", "p90")
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


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
        elif line.startswith("FAIL:") or "PANIC" in line:
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
        m = re.search(r"cache ID trap (TID\d)", line)
        if m:
            hyp["cache_id_trap"] = m.group(1)
        m = re.search(r"EL2 stack use \(high-water, bytes\): (.*)", line)
        if m:
            hyp["stack_high_water"] = m.group(1).strip()
        m = re.search(r"(VM '[^']*': \d+ MiB RAM at IPA .*)", line)
        if m:
            hyp["vm_line"] = m.group(1)
        # Lines stating the heap in use or the stage-2 tables' size, if the
        # hypervisor logs them ("heap: 12345 bytes in use", "stage-2 tables: 12 KiB");
        # "root table(s); frame allocator: N MiB" is not one.
        if re.search(r"\bheap\b[^;]*?\d[\d,]* ?(bytes|KiB|MiB)\b", line, re.I):
            hyp.setdefault("heap_lines", []).append(line)
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
    scale = (insns_per_tick(run) or 0) if unit == "cntvct" else 1.0
    if not scale:
        return None
    out = {k: round(num(kv[k]) * scale, 4) for k in STATS if num(kv.get(k)) is not None}
    out.update(iters=int(kv["iters"]), batch=int(kv["batch"]), raw_unit=unit)
    # The headline figure is the median: robust against the rare sample in which
    # QEMU's round-robin ran another CPU's spinning code. When one counter tick
    # spans several instructions (CNTFRQ < 1 GHz) a sample is only known to
    # `resolution` instructions per operation.
    out["stat"] = "median"
    out["value"] = out.get("median")
    out["resolution"] = round(scale / out["batch"], 4)
    if kv.get("note"):
        out["note"] = kv["note"]
    return out


def na_note(run: dict, name: str):
    kv = run["rows"].get(name, {}).get("n/a")
    return kv.get("note") if kv else None


# The statistics the table shows; the others (mean, min, max) are only in the JSON.
SHOWN = ("median", "p10", "p90")


def compare_runs(a: dict, b: dict) -> dict:
    """What differs between two runs of the same guest: every row and boot_cntpct.
    `shown` lists differences in figures the table shows (and the boot count),
    `other` differences in the rest (a single odd sample moves max and mean)."""
    shown, other = [], []
    for name in sorted(set(a["rows"]) | set(b["rows"])):
        for unit in sorted(set(a["rows"].get(name, {})) | set(b["rows"].get(name, {}))):
            x = a["rows"].get(name, {}).get(unit) or {}
            y = b["rows"].get(name, {}).get(unit) or {}
            if x == y:
                continue
            keys = [k for k in STATS if x.get(k) != y.get(k)]
            text = f"{name}/{unit}: " + ", ".join(f"{k} {x.get(k)} vs {y.get(k)}" for k in keys)
            if not keys or any(k in SHOWN for k in keys):
                shown.append(text)
            else:
                other.append(text)
    if a["info"].get("boot_cntpct") != b["info"].get("boot_cntpct"):
        shown.append(f"boot_cntpct {a['info'].get('boot_cntpct')} vs "
                     f"{b['info'].get('boot_cntpct')}")
    return {"checked": True, "shown": shown, "other": other}


def determinism(runs: list) -> dict:
    if len(runs) < 2:
        return {"checked": False, "why": "only one run"}
    if not all(r["done"] for r in runs):
        return {"checked": False, "why": "a run did not finish"}
    return compare_runs(runs[0], runs[1])


def fmt(v, digits=2):
    if v is None:
        return "n/a"
    if isinstance(v, float) and v.is_integer():
        return f"{int(v):,}"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}"


def make_row(name: str, cpu: str, fv: dict, bare: dict, trap) -> dict:
    """One table row from run 1 of one configuration."""
    f1, b1 = fv[0], bare[0]
    row = {"name": name, "cpu": cpu, "unit": "instructions per operation"}
    sf, sb = stats(f1, name, "cntvct"), stats(b1, name, "cntvct")
    row["ferrovisor"], row["bare_qemu"] = sf, sb
    row["pmccntr"] = {"ferrovisor": stats(f1, name, "pmccntr"),
                      "bare_qemu": stats(b1, name, "pmccntr")}
    notes = []
    if name in ROW_NOTES:
        notes.append(ROW_NOTES[name])
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
    floor = (stats(f1, "loop_floor", "cntvct") or {}).get("value")
    untrapped = False
    if name in CPU_MODEL_ROWS:
        row["trap"] = trap
        if sf and floor is not None and sf["value"] <= floor + (sf.get("resolution") or 0) + 1:
            untrapped = True
            notes.append(f"not trapped here ({trap or 'no cache-ID trap'}): costs the loop floor")
        elif name == "sysreg_ctr_el0" and sf:
            notes.append(f"trapped ({trap}): the vector's fast path")
        elif name == "sysreg_ccsidr" and sf:
            notes.append(f"trapped ({trap}): the full exit path")
    if sf and sf.get("resolution", 1) > 1:
        notes.append(f"CNTFRQ {fmt(num(f1['info'].get('cntfrq')))} Hz: one sample is known to "
                     f"{fmt(sf['resolution'])} instruction(s) per op")
    row["kvm_reference"] = KVM_REFERENCE.get(name)
    if name in GOALS:
        row["goal_max"] = GOALS[name]
        value = (row["ferrovisor"] or {}).get("value")
        row["goal_met"] = None if value is None else value <= GOALS[name]
        if untrapped:
            # The goal is for the trapped fast path; an untrapped read says nothing.
            row["goal_met"] = None
            row["goal_note"] = "fast path not exercised: the read is not trapped"
    row["notes"] = notes
    return row


def build(args) -> dict:
    configs = []
    for cpu, fv1, fv2, b1, b2 in args.runs:
        configs.append({"cpu": cpu, "fv": [parse_log(fv1), parse_log(fv2)],
                        "bare": [parse_log(b1), parse_log(b2)]})
    main = configs[0]
    failed = [r["path"] for c in configs for r in c["fv"] + c["bare"] if not r["done"]]
    micro_failed = list(failed)
    f1, b1 = main["fv"][0], main["bare"][0]

    rows = []
    for name in ROW_ORDER:
        rows.append(make_row(name, main["cpu"], main["fv"], main["bare"],
                             f1["hyp_log"].get("cache_id_trap")))
        if name in CPU_MODEL_ROWS:
            for c in configs[1:]:
                rows.append(make_row(name, c["cpu"], c["fv"], c["bare"],
                                     c["fv"][0]["hyp_log"].get("cache_id_trap")))

    boot = {}
    one_cpu = []
    bf, bb = num(f1["info"].get("boot_cntpct")), num(b1["info"].get("boot_cntpct"))
    tf, tb = insns_per_tick(f1), insns_per_tick(b1)
    if bf is not None and bb is not None and tf and tb:
        boot = {
            "qemu_start_to_guest_main_ferrovisor": round(bf * tf),
            "qemu_start_to_guest_main_bare": round(bb * tb),
            "hypervisor_boot_instructions": round(bf * tf - bb * tb),
            "cpu": main["cpu"],
            "how": "CNTPCT_EL0 read first thing in the bench guest's main; under icount "
                   "it counts every instruction since QEMU started (all CPUs)",
        }
        one_cpu = []
        for mib, path in args.boot_1cpu or []:
            one = parse_log(path)
            b1c, t1c = num(one["info"].get("boot_cntpct")), insns_per_tick(one)
            if b1c is not None and t1c:
                one_cpu.append({"vm_ram_mib": int(mib), "log": path,
                                "hypervisor_boot_instructions": round(b1c * t1c - bb * tb),
                                "hyp_log": one["hyp_log"]})
            else:
                boot.setdefault("one_cpu_na", []).append(f"no BENCH-INFO line in {path}")
        one_cpu.sort(key=lambda x: x["vm_ram_mib"])
        boot["one_cpu"] = [{k: v for k, v in x.items() if k != "hyp_log"} for x in one_cpu]
        if len(one_cpu) >= 2 and one_cpu[-1]["vm_ram_mib"] > one_cpu[0]["vm_ram_mib"]:
            # Least squares over the points: instructions = fixed + per_byte * RAM bytes.
            xs = [x["vm_ram_mib"] << 20 for x in one_cpu]
            ys = [x["hypervisor_boot_instructions"] for x in one_cpu]
            mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
            per_byte = (sum((x - mx) * (y - my) for x, y in zip(xs, ys))
                        / sum((x - mx) ** 2 for x in xs))
            boot["per_vm_ram_byte"] = round(per_byte, 3)
            boot["fixed"] = round(my - per_byte * mx)

    image_bytes = None
    try:
        with open(args.image, "rb") as f:
            image_bytes = len(f.read())
    except OSError:
        pass
    hyp = f1["hyp_log"]
    footprint = {"image_file_bytes": image_bytes, "image_file": os.path.basename(args.image)}
    footprint.update({k: v for k, v in hyp.items()
                      if k not in ("stage2_table_lines", "heap_lines", "cache_id_trap")})
    if "ram_mib" in hyp and "free_for_vms_mib" in hyp:
        footprint["ram_not_free_for_vms_mib"] = hyp["ram_mib"] - hyp["free_for_vms_mib"]
    footprint["heap_in_use"] = (
        hyp["heap_lines"] if hyp.get("heap_lines")
        else "n/a (the hypervisor does not log it)")
    gib = [x for x in one_cpu if x["vm_ram_mib"] == 1024]
    if gib and gib[0]["hyp_log"].get("stage2_table_lines"):
        footprint["stage2_tables_1gib_guest"] = gib[0]["hyp_log"]["stage2_table_lines"]
    elif gib:
        footprint["stage2_tables_1gib_guest"] = (
            "n/a (the hypervisor does not log its stage-2 table memory; "
            f"the 1 GiB guest's boot log is bench/{os.path.basename(gib[0]['log'])})")
    else:
        footprint["stage2_tables_1gib_guest"] = "n/a (no boot run with a 1 GiB guest)"

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
        "schema": 2,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "qemu": args.qemu_version,
        "icount": "shift=0,sleep=off",
        "smp": args.smp,
        "unit": "instructions per operation: CNTVCT_EL0 ticks x 1e9/CNTFRQ (icount shift=0: "
                "1 instruction = 1 ns of guest time); per op = one sample / its batch size",
        "cpus": [c["cpu"] for c in configs],
        "cntfrq_hz": {c["cpu"]: {"ferrovisor": num(c["fv"][0]["info"].get("cntfrq")),
                                 "bare_qemu": num(c["bare"][0]["info"].get("cntfrq"))}
                      for c in configs},
        "cache_id_trap": {c["cpu"]: c["fv"][0]["hyp_log"].get("cache_id_trap") for c in configs},
        "pmu": {"ferrovisor": f1["info"].get("pmu_note") or f1["info"].get("pmu"),
                "bare_qemu": b1["info"].get("pmu_note") or b1["info"].get("pmu")},
        "rows": rows,
        "determinism": {c["cpu"]: {"ferrovisor": determinism(c["fv"]),
                                   "bare_qemu": determinism(c["bare"])} for c in configs},
        "boot": boot,
        "footprint": footprint,
        "linux_boot": linux,
        "runs": {c["cpu"]: {"ferrovisor": [r["path"] for r in c["fv"]],
                            "bare_qemu": [r["path"] for r in c["bare"]]} for c in configs},
        "failed_runs": failed,
        "micro_failed_runs": micro_failed,
        "failures": [x for c in configs for r in c["fv"] + c["bare"] for x in r["fail"]],
    }


def cells(r: dict) -> dict:
    """The display cells of one row (shared by the text and markdown tables)."""
    f, b = r.get("ferrovisor"), r.get("bare_qemu")
    cpu = r["cpu"] + (f" ({r['trap']})" if r.get("trap") else "")
    if r.get("na") and not f:
        return {"row": r["name"], "cpu": cpu, "na": r["na"],
                "kvm": fmt(r["kvm_reference"]) if r.get("kvm_reference") else "",
                "goal": f"<= {r['goal_max']}" if "goal_max" in r else ""}
    goal = ""
    if "goal_max" in r:
        state = {True: "met", False: "missed", None: "-"}[r["goal_met"]]
        if r.get("goal_note"):
            state = "not exercised"
        goal = f"<= {r['goal_max']} ({state})"
    return {
        "row": r["name"], "cpu": cpu,
        "fv": fmt(f.get("value")),
        "spread": (f"{fmt(f['p10'])}..{fmt(f['p90'])}" if "p10" in f
                   else f.get("derived", "")),
        "bare": fmt(b["value"]) if b else "n/a",
        "ratio": f"{r['ratio']:,.1f}x" if r.get("ratio") is not None else "",
        "kvm": fmt(r["kvm_reference"]) if r.get("kvm_reference") else "",
        "goal": goal,
    }


def boot_lines(d: dict) -> list[str]:
    b = d["boot"]
    if not b:
        return ["hypervisor boot: n/a (no boot count)"]
    out = [f"hypervisor boot (QEMU start to the guest's main, minus the same on bare QEMU), "
           f"-cpu {b['cpu']} -smp {d['smp']}, the bench VM: "
           f"{fmt(b['hypervisor_boot_instructions'])} instructions"]
    for one in b.get("one_cpu", []):
        out.append(f"the same with -smp 1 and one vCPU, {one['vm_ram_mib']} MiB VM: "
                   f"{fmt(one['hypervisor_boot_instructions'])} instructions")
    if "per_vm_ram_byte" in b:
        out.append(f"so the boot grows by {b['per_vm_ram_byte']:.3f} instructions per byte of VM "
                   f"RAM (its RAM is zeroed before the guest starts), about "
                   f"{fmt(b['fixed'])} fixed")
    for x in b.get("one_cpu_na", []):
        out.append(f"one-CPU boot: n/a ({x})")
    return out


def footprint_lines(d: dict) -> list[str]:
    fp = d["footprint"]
    out = [f"hypervisor image file: {fmt(fp['image_file_bytes'])} bytes"]
    if "image_in_ram_bytes" in fp:
        out.append(f"hypervisor in RAM: {fmt(fp['image_in_ram_bytes'])} bytes "
                   "(image + BSS with the heap + stacks: the boot log's image range)")
    if "ram_not_free_for_vms_mib" in fp:
        out.append(f"RAM not free for VMs: {fp['ram_not_free_for_vms_mib']} MiB of "
                   f"{fp['ram_mib']} MiB (includes the device tree and boot bundle)")
    if "frame_allocator_free_mib" in fp:
        out.append(f"frame allocator free: {fp['frame_allocator_free_mib']} MiB "
                   "(boot log, before any VM is built)")
    heap = fp["heap_in_use"]
    out.append(f"heap in use: {heap if isinstance(heap, str) else '; '.join(heap)}")
    st = fp["stage2_tables_1gib_guest"]
    out.append(f"stage-2 tables, 1 GiB guest: {st if isinstance(st, str) else '; '.join(st)}")
    if "stack_high_water" in fp:
        out.append(f"EL2 stacks, high-water mark in bytes (logged at power-off): "
                   f"{fp['stack_high_water']}")
    if "vm_line" in fp:
        out.append(f"the bench VM: {fp['vm_line']}")
    return out


def linux_lines(d: dict) -> list[str]:
    lx = d["linux_boot"]
    out = []
    if lx.get("status") == "n/a":
        return [f"n/a ({lx['reason']})"]
    fv, di = lx.get("ferrovisor", {}), lx.get("direct", {})

    def secs(v, digits):
        return "n/a" if v is None else f"{v:,.{digits}f} s"

    head = (f"-cpu {lx.get('cpu', '?')}, -smp {lx.get('smp', '?')}, "
            f"{lx.get('memory', {}).get('vm_and_direct', '?')} for the guest; ")
    ratio = lx.get("run_init_s_ratio")
    goal = "" if ratio is None else (" met" if ratio <= LINUX_BOOT_GOAL else " missed")
    out.append(head + f"kernel printk time of 'Run /init as init process' (icount guest time, "
               f"1 us): Ferrovisor {secs(fv.get('run_init_s_median'), 6)}, direct "
               f"{secs(di.get('run_init_s_median'), 6)}, ratio {fmt(ratio, 3)} "
               f"(goal <= {LINUX_BOOT_GOAL}{goal}; counted from the guest kernel's sched_clock "
               f"start, so the hypervisor's own boot is not in it)")
    out.append(f"/proc/uptime read by /init: Ferrovisor {secs(fv.get('uptime_s_median'), 3)}, "
               f"direct {secs(di.get('uptime_s_median'), 3)}, ratio "
               f"{fmt(lx.get('uptime_s_ratio'), 3)} (10 ms resolution; its origin is later in "
               f"the kernel's boot, so it can leave part of the difference out)")
    for name in ("ferrovisor", "direct"):
        vals = lx.get(name, {}).get("uptime_s_all") or []
        inits = [v for v in lx.get(name, {}).get("run_init_s_all") or [] if v]
        if len(set(vals)) > 1 or len(set(inits)) > 1:
            spread = (f" (Run /init spread {100 * (max(inits) - min(inits)) / min(inits):.2f}%)"
                      if inits else "")
            out.append(f"{name} boots differ: uptime {vals}, Run /init {inits}{spread}")
    out.append(f"wall clock QEMU start to userspace (noisy: shared machine): Ferrovisor "
               f"{secs(fv.get('wall_s_median'), 2)}, direct {secs(di.get('wall_s_median'), 2)}, "
               f"ratio {fmt(lx.get('wall_s_ratio'), 3)}")
    out.append(f"boots reaching userspace: Ferrovisor {fv.get('reached')}/{fv.get('boots')}, "
               f"direct {di.get('reached')}/{di.get('boots')}"
               + (" (after a failed Ferrovisor boot the others are skipped)"
                  if fv.get("boots", 0) < di.get("boots", 0) else ""))
    for name in ("ferrovisor", "direct"):
        for r in lx.get("runs", {}).get(name, []):
            if not r.get("reached"):
                out.append(f"{name} #{r.get('round')}: {r.get('error')}")
    if lx.get("reason"):
        out.append(lx["reason"])
    return out


def determinism_lines(d: dict) -> list[str]:
    out = []
    for cpu, envs in d["determinism"].items():
        for env, det in envs.items():
            label = f"{'Ferrovisor' if env == 'ferrovisor' else 'bare QEMU'} -cpu {cpu}"
            if not det["checked"]:
                out.append(f"{label}: not checked ({det['why']})")
            elif det["shown"]:
                out.append(f"{label}: runs 1 and 2 DIFFER: " + "; ".join(det["shown"]))
            elif det["other"]:
                out.append(f"{label}: runs 1 and 2 give the same table figures; single samples "
                           "differ: " + "; ".join(det["other"]))
            else:
                out.append(f"{label}: runs 1 and 2 identical")
    return out


def repeatable(d: dict) -> bool:
    """Whether every configuration's two runs gave the same table figures."""
    return all(det["checked"] and not det["shown"]
               for envs in d["determinism"].values() for det in envs.values())


def header_lines(d: dict) -> list[str]:
    freqs = ", ".join(f"-cpu {cpu}: CNTFRQ {fmt(v['ferrovisor'] or v['bare_qemu'])} Hz"
                      for cpu, v in d["cntfrq_hz"].items())
    return [
        f"{d['qemu']}, TCG, -icount {d['icount']}, -smp {d['smp']}; {d['date']}",
        f"unit: instructions per operation = CNTVCT ticks x 1e9/CNTFRQ ({freqs});",
        "      figures are medians; each sample is a batch of ops between two counter reads,",
        "      which add 2 instructions per sample (loop_floor shows them per op);",
        "      spread = p10..p90 of the samples",
    ]


def table(d: dict) -> str:
    out = ["Ferrovisor micro-benchmarks"] + header_lines(d) + [""]
    w = out.append
    hdr = {"row": "row", "cpu": "CPU", "fv": "Ferrovisor", "spread": "p10..p90",
           "bare": "bare QEMU", "ratio": "ratio", "kvm": "KVM/arm64", "goal": "goal"}
    keys = list(hdr)
    all_cells = [(cells(r), r) for r in d["rows"]]
    widths = {k: max([len(hdr[k])] + [len(c.get(k, "")) for c, _ in all_cells if "na" not in c])
              for k in keys}
    line = "  ".join(hdr[k].ljust(widths[k]) for k in keys).rstrip()
    w(line)
    w("-" * len(line))
    for c, r in all_cells:
        if "na" in c:
            w(f"{c['row'].ljust(widths['row'])}  {c['cpu'].ljust(widths['cpu'])}  n/a ({c['na']})"
              + (f"  KVM {c['kvm']}" if c["kvm"] else "") + (f"  goal {c['goal']}" if c["goal"] else ""))
        else:
            w("  ".join(c[k].ljust(widths[k]) for k in keys).rstrip())
        for n in r["notes"]:
            w(f"{'':{widths['row']}}    - {n}")
    w("")
    pm = [(r["name"] if r["cpu"] == d["cpus"][0] else f"{r['name']} ({r['cpu']})",
           r["cpu"], r["pmccntr"]["bare_qemu"]["value"]) for r in d["rows"]
          if r["pmccntr"]["bare_qemu"]]
    w("PMCCNTR_EL0 on bare QEMU (cycles per op; QEMU counts 1 cycle per ns = per instruction):")
    w("  " + (", ".join(f"{n} {fmt(v)}" for n, _, v in pm) if pm
              else f"n/a ({d['pmu']['bare_qemu']})"))
    w(f"  under Ferrovisor: n/a ({d['pmu']['ferrovisor'] or 'no data'})")
    w("")
    w("determinism:")
    out += ["  " + x for x in determinism_lines(d)]
    w("")
    out += boot_lines(d)
    w("footprint:")
    out += ["  " + x for x in footprint_lines(d)]
    w("")
    w("Linux boot (same kernel/initramfs/-cpu/-smp, A/B/A/B):")
    out += ["  " + x for x in linux_lines(d)]
    if d["failed_runs"]:
        w("")
        w("FAILED: " + ", ".join(d["failed_runs"]))
        for x in d["failures"]:
            w(f"  {x}")
    return "\n".join(out)


def md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(d: dict) -> str:
    """The README section: the same data as `table`, as markdown."""
    cpus = ", ".join(f"`{cpu}` ({fmt(v['ferrovisor'] or v['bare_qemu'])} Hz counter, "
                     f"cache-ID trap {d['cache_id_trap'].get(cpu) or 'n/a'})"
                     for cpu, v in d["cntfrq_hz"].items())
    out = [
        f"Generated by `make bench` on {d['date']}: {md_escape(d['qemu'])}, TCG, "
        f"`-icount {d['icount']}`, `-smp {d['smp']}`; CPU models {cpus}. "
        "Do not edit by hand: the next run rewrites this section.",
        "",
        "How to read it: each figure is guest instructions per operation (median; the "
        "hypervisor's instructions count too), Ferrovisor beside the same operation on bare "
        "QEMU with no hypervisor and KVM/arm64's figure on the same QEMU; the CPU column "
        "says which `-cpu` the figure comes from.",
        "",
        "| operation | CPU | Ferrovisor | p10..p90 | bare QEMU | ratio | KVM/arm64 | goal | notes |",
        "|---|---|--:|--:|--:|--:|--:|---|---|",
    ]
    for r in d["rows"]:
        c = cells(r)
        notes = md_escape("; ".join(r["notes"]))
        if "na" in c:
            out.append(f"| `{c['row']}` | {c['cpu']} | n/a | | | | {c['kvm']} | "
                       f"{md_escape(c['goal'])} | {md_escape(c['na'])}"
                       + (f"; {notes}" if notes else "") + " |")
        else:
            out.append(f"| `{c['row']}` | {c['cpu']} | {c['fv']} | {c['spread']} | {c['bare']} | "
                       f"{c['ratio']} | {c['kvm']} | {md_escape(c['goal'])} | {notes} |")
    out.append("")
    det = determinism_lines(d)
    same = all(x.endswith("identical") for x in det)
    out.append("- Repeatability: " + ("every configuration ran twice and gave identical "
                                      "figures." if same else md_escape("; ".join(det))))
    for title, lines in (("Hypervisor boot", boot_lines(d)), ("Footprint", footprint_lines(d)),
                         ("Linux boot, Ferrovisor vs direct (A/B alternated)", linux_lines(d))):
        out.append(f"- {title}:")
        out += ["  - " + md_escape(x) for x in lines]
    if d["failed_runs"]:
        out.append("- FAILED: " + md_escape(", ".join(d["failed_runs"])))
    return "\n".join(out) + "\n"


def update_readme(path: str, section: str) -> None:
    """Replaces the text between the bench markers; refuses if they are not there
    exactly once each, in order."""
    text = open(path).read()
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"{path}: expected one '{BEGIN}' before one '{END}'")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    with open(path, "w") as f:
        f.write(head + BEGIN + "\n" + section.rstrip("\n") + "\n" + END + tail)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", nargs=5, action="append", required=True,
                    metavar=("CPU", "FV1", "FV2", "BARE1", "BARE2"))
    ap.add_argument("--smp", type=int, default=2)
    ap.add_argument("--boot-1cpu", nargs=2, action="append", metavar=("VM_MIB", "LOG"),
                    help="a one-CPU Ferrovisor run with a VM of VM_MIB MiB, stopped early")
    ap.add_argument("--image", required=True)
    ap.add_argument("--linux")
    ap.add_argument("--linux-na")
    ap.add_argument("--qemu-version", default="QEMU")
    ap.add_argument("--out", required=True)
    ap.add_argument("--readme", help="README.md whose bench section to rewrite")
    args = ap.parse_args()
    d = build(args)
    text = table(d)
    d["table"] = text
    d["markdown"] = markdown(d)
    with open(args.out, "w") as f:
        json.dump(d, f, indent=2)
    print(text)
    status = 1 if d["failed_runs"] else 0
    if not repeatable(d):
        print("bench: the two runs of a configuration gave different figures", file=sys.stderr)
        status = 1
    if args.readme:
        if d["micro_failed_runs"]:
            # Only a table of finished runs goes into the README; a failed Linux
            # comparison is shown there as failed.
            print(f"bench: {args.readme} not updated: a benchmark run failed", file=sys.stderr)
        else:
            try:
                update_readme(args.readme, d["markdown"])
                print(f"bench: rewrote the bench section of {args.readme}", file=sys.stderr)
            except (OSError, ValueError) as e:
                print(f"bench: {args.readme} not updated: {e}", file=sys.stderr)
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
