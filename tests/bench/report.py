#!/usr/bin/env python3
"""Turns the bench guest's output into the `make bench` table, JSON and README section.

    report.py --runs CPU FV_LOG1 FV_LOG2 BARE_LOG1 BARE_LOG2  [--runs ...]
              [--boot-1cpu VM_MIB LOG1 LOG2 ...] [--shared CPU LOG1 LOG2]
              --image ferrovisor.bin
              [--linux linux.json | --linux-na REASON] --qemu-version TEXT
              --out bench.json [--readme README.md]

Each --runs names a QEMU CPU model and the serial output of the bench guest
(tests/guests/bench) run twice under Ferrovisor and twice on bare QEMU at EL1 with
that CPU, all with `-icount shift=0`. The first --runs is the main configuration
(every row); later ones add the rows whose trap depends on the CPU model (the
cache-ID registers: TID4 with FEAT_EVT, TID2 without). Figures come from run 1;
run 2 only checks that they repeat. --boot-1cpu is a Ferrovisor boot with one CPU
and a one-vCPU VM of VM_MIB MiB, stopped after the guest's first line, run twice:
the hypervisor's boot count (the 1024 MiB one is the `hyp_boot_1gib` row).
--shared is the bench guest run twice with `bench=shared`, its two vCPUs on one
physical CPU: the `vcpu_switch`, `wake_ipi` and `timer_10ms_shared` rows (no
bare QEMU figure: they need a hypervisor that shares a CPU).
--linux is tests/bench/linux_boot.py's result: the `linux_run_init` and
`linux_wall` rows and a summary of a Linux boot's exits. Nothing is estimated: a
row without a measurement says n/a and why.

Beside each row: the figures other hypervisors reach on the same QEMU (measured
elsewhere, see REFERENCE) where the row names match, and the row's goal with
whether it is met.

--readme rewrites the part of README.md between `<!-- bench:begin -->` and
`<!-- bench:end -->` with the table as markdown; nothing else in the file changes.

Exit status: 1 if a run did not finish (no BENCH-DONE line), the two runs of a
configuration differ in a figure the table shows (median, p10, p90, boot count),
the Linux comparison failed or its guest-time figures differ between boots, or
the README could not be updated, else 0. The README is left alone when a benchmark
run did not finish. Standard library only.
"""

import argparse
import datetime
import json
import os
import re
import sys

# Other hypervisors on the same QEMU (10.0.2 TCG, -icount shift=0, 2 vCPUs), in
# instructions per operation, measured elsewhere with kvm-unit-tests' micro-bench
# loop and the same guests (issue 17; research/performance.md): Bao (static
# partitioning, its per-call console warning silenced), Xen 4.17 (dom0less,
# credit2, vwfi=native), KVM/arm64 (Linux 6.12, VHE, nested). A string is what
# that hypervisor does instead of a figure. `bare` is that loop on bare QEMU.
REFERENCE = {
    "hyp_call": {"bare": 12, "bao": 125, "xen": 1660, "kvm": 1367},
    "psci_version": {"bare": 2, "bao": 190, "xen": 472},
    "sysreg_id": {"bare": 1, "bao": "not trapped", "xen": 432},
    "mmio_read_vgic": {"bare": 15, "bao": 241, "xen": 596, "kvm": 2211},
    "mmio_read_user": {"bare": 14, "bao": "passed through", "xen": 636, "kvm": 7015},
    "eoi": {"bao": 21, "xen": 21, "kvm": 21},
    "ipi": {"bare": 557, "bao": 1344, "xen": 2175, "kvm": 5242},
    "timer_10ms": {"bare": 159, "bao": 691, "xen": 1070, "kvm": 5457},
    "setway_sweep": {"bare": 266_000, "bao": "not trapped", "xen": 14_100_000},
    "linux_run_init": {"xen": "≈1.00x"},
}
REFERENCE_NOTES = {
    "hyp_call": "Xen's figure includes logging the unknown call",
    "setway_sweep": "Xen: 53x its bare QEMU loop",
}
REF_COLUMNS = (("bao", "Bao"), ("xen", "Xen"), ("kvm", "KVM/arm64"))

# Goals (issue 17), in the row's unit: ("max", N) = at most N; ("ratio", R) = at
# most R times bare QEMU (or the direct Linux boot). ("today", N): a row that is
# fast today must not get slower (its figure at 257496b).
GOALS = {
    "hyp_call": ("max", 100),
    "hyp_call_fast": ("today", 21.125),
    "psci_version": ("max", 120),
    "sysreg_id": ("max", 120),
    "sysreg_ccsidr": ("max", 120),
    "sysreg_ctr_el0": ("today", 38),
    "mmio_read_user": ("max", 180),
    "mmio_read_vgic": ("max", 180),
    "eoi": ("today", 3),
    "timer_10ms": ("max", 600),
    "ipi": ("max", 800),
    "vcpu_switch": ("max", 1500),
    "first_touch": ("today", 2.125),
    "second_touch": ("today", 2.125),
    "setway_sweep": ("ratio", 10),
    "hyp_boot_1gib": ("max", 20_000_000),
    "linux_run_init": ("ratio", 1.02),
    "linux_wall": ("ratio", 1.15),
}

ROW_ORDER = [
    "loop_floor", "hyp_call", "hyp_call_fast", "psci_version", "sysreg_id",
    "sysreg_ccsidr", "sysreg_ctr_el0", "mmio_first_access", "mmio_read_user",
    "mmio_read_vgic", "eoi", "timer_10ms", "timer_10ms_wfi", "ipi", "ipi_send",
    "vcpu_switch", "wake_ipi", "timer_10ms_shared",
    "first_touch", "second_touch", "stage2_fault", "fp_first_use",
    "setway_sweep_first", "setway_sweep",
]
# Rows repeated from the later --runs configurations (their trap differs by CPU).
CPU_MODEL_ROWS = ("sysreg_ccsidr", "sysreg_ctr_el0")
# Rows measured in the --shared runs (two vCPUs on one physical CPU).
SHARED_ROWS = ("vcpu_switch", "wake_ipi", "timer_10ms_shared")
# Rows whose one operation is a whole sweep, not one instruction.
SWEEP_ROWS = ("setway_sweep_first", "setway_sweep")

# Fixed notes, by row (the guest's own note is added where it says more).
ROW_NOTES = {
    "loop_floor": "a `nop`: what the measurement itself costs per op",
    "hyp_call": "HVC with function ID 0x4b000000, which nothing implements (kvm-unit-tests' "
                "hyp_call): the normal exit path, answered NOT_SUPPORTED",
    "hyp_call_fast": "HVC SMCCC_VERSION: Ferrovisor's vector fast path (bare: QEMU answers "
                     "NOT_SUPPORTED)",
    "psci_version": "HVC PSCI_VERSION",
    "sysreg_id": "MRS ID_AA64PFR0_EL1 (trapped with HCR_EL2.TID3)",
    "mmio_first_access": "vCPU 0's first access to an emulated device register after boot "
                         "(PL011 UARTFR, one sample)",
    "mmio_read_user": "PL011 UARTFR (emulated by Ferrovisor; bare: QEMU's PL011)",
    "mmio_read_vgic": "GICD_IIDR (Ferrovisor's vGIC; bare: QEMU's GICv3)",
    "eoi": "ICC_EOIR1_EL1 of an acknowledged SGI, one per sample (+2 window instructions); "
           "the references write the spurious INTID 1023",
    "timer_10ms": "virtual timer, deadline 10 ms ahead, guest spinning: deadline to handler entry",
    "timer_10ms_wfi": "the same with the guest in WFI (the hypervisor's idle path)",
    "ipi": "SGI from vCPU 0 to vCPU 1 (in WFI): send to handler entry; the references run "
           "until the sender sees the handler's flag",
    "ipi_send": "the trapped ICC_SGI1R_EL1 write as the sender sees it",
    "vcpu_switch": "two vCPUs on one physical CPU: vCPU 0's WFI (vCPU 1 ready) to vCPU 1's "
                   "IRQ handler entry: the WFI trap, the switch, the virtual IRQ's entry; "
                   "FP/SIMD not switched (lazy, neither uses it)",
    "wake_ipi": "SGI to vCPU 1, blocked in WFI on the sender's physical CPU; the sender then "
                "WFIs: send to handler entry",
    "timer_10ms_shared": "virtual timer 10 ms ahead, vCPU 0 in WFI while vCPU 1 spins on the "
                         "same physical CPU: deadline to handler entry",
    "first_touch": "one load per fresh 4 KiB page (median: the samples that map a new 2 MiB chunk are stage2_fault)",
    "second_touch": "the same pages again",
    "setway_sweep_first": "the first whole-hierarchy DC CISW sweep (Ferrovisor: includes "
                          "cleaning the VM's RAM and arming HCR_EL2.TVM); instructions per sweep",
    "setway_sweep": "DC CISW over every set and way of every data cache level up to LoC, "
                    "`host` cache topology (the same sets and ways as bare QEMU); "
                    "instructions per sweep, median of 5",
    "hyp_boot_1gib": "QEMU start to the guest's first instruction minus the same on bare "
                     "QEMU: -smp 1, one vCPU, 1 GiB of VM RAM; instructions",
    "linux_run_init": "Linux's printk time of `Run /init as init process` (guest time, "
                      "icount): Ferrovisor vs the same kernel booted directly, median over "
                      "three -seed values (by seed below)",
    "linux_wall": "host seconds from QEMU start to the initramfs's userspace marker (the "
                  "shell starts next), median of all boots; noisy on a shared machine",
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
            # RAM is mapped a 2 MiB chunk at a time on first touch: one sample
            # of 16 pages in 32 includes the stage-2 fault that zeroes and maps
            # a chunk (the median does not). The slowest first-touch sample
            # less a second touch of the same pages is that fault's cost.
            extra = round((ft.get("max", 0) - st["value"]) * ft["batch"])
            if extra > 8:
                row["ferrovisor"] = {"value": extra, "stat": "max",
                                     "derived": "(slowest first_touch sample - second_touch) x pages per sample"}
                notes.append("the first touch of a 2 MiB chunk of guest RAM: a stage-2 "
                             "Translation fault, the chunk zeroed (DC ZVA) and mapped; "
                             "instructions per fault, the zeroing included")
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
    if name in SWEEP_ROWS:
        row["unit"] = "instructions per sweep"
    if name == "mmio_first_access":
        row["unit"] = "instructions (one access)"
    add_reference_and_goal(row)
    if untrapped and "goal" in row:
        # The goal is for the trapped path; an untrapped read says nothing about it.
        row["goal"]["met"] = None
        row["goal"]["note"] = "not exercised: the read is not trapped"
    row["notes"] = notes
    return row


def add_reference_and_goal(row: dict) -> None:
    """The other hypervisors' figures for this row's name, and its goal with
    whether the Ferrovisor figure meets it."""
    name = row["name"]
    row["reference"] = {k: v for k, v in REFERENCE.get(name, {}).items() if k != "bare"}
    if name in REFERENCE_NOTES:
        row["reference_note"] = REFERENCE_NOTES[name]
    if name not in GOALS:
        return
    kind, limit = GOALS[name]
    value = (row.get("ferrovisor") or {}).get("value")
    if kind == "ratio":
        measured = row.get("ratio")
    else:
        measured = value
    row["goal"] = {"kind": kind, "limit": limit,
                   "met": None if measured is None else measured <= limit}


def goal_text(r: dict) -> str:
    g = r.get("goal")
    if not g:
        return ""
    limit = fmt(g["limit"])
    text = {"max": f"<= {limit}", "ratio": f"<= {limit}x",
            "today": f"<= {limit} (today's)"}[g["kind"]]
    state = g.get("note") or {True: "met", False: "missed", None: "-"}[g["met"]]
    return f"{text} {state}"


def build(args) -> dict:
    configs = []
    for cpu, fv1, fv2, b1, b2 in args.runs:
        configs.append({"cpu": cpu, "fv": [parse_log(fv1), parse_log(fv2)],
                        "bare": [parse_log(b1), parse_log(b2)]})
    main = configs[0]
    failed = [r["path"] for c in configs for r in c["fv"] + c["bare"] if not r["done"]]
    shared = None
    if args.shared:
        cpu, l1, l2 = args.shared
        shared = {"cpu": cpu, "fv": [parse_log(l1), parse_log(l2)]}
        failed += [r["path"] for r in shared["fv"] if not r["done"]]
    micro_failed = list(failed)
    f1, b1 = main["fv"][0], main["bare"][0]

    rows = []
    no_bare = {"path": "", "info": {}, "rows": {}, "done": False, "hyp_log": {}, "fail": []}
    for name in ROW_ORDER:
        if name in SHARED_ROWS:
            if shared:
                row = make_row(name, shared["cpu"], shared["fv"], [no_bare], None)
            else:
                row = {"name": name, "cpu": main["cpu"], "unit": "instructions per operation",
                       "ferrovisor": None, "bare_qemu": None, "pmccntr": {},
                       "na": "not run (no --shared runs)", "notes": [ROW_NOTES[name]]}
                add_reference_and_goal(row)
            rows.append(row)
            continue
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
        for mib, *paths in args.boot_1cpu or []:
            counts = []
            for path in paths:
                one = parse_log(path)
                b1c, t1c = num(one["info"].get("boot_cntpct")), insns_per_tick(one)
                counts.append(round(b1c * t1c - bb * tb) if b1c is not None and t1c else None)
            if counts and counts[0] is not None:
                one = parse_log(paths[0])
                one_cpu.append({"vm_ram_mib": int(mib), "log": paths[0],
                                "hypervisor_boot_instructions": counts[0],
                                "repeats": counts, "hyp_log": one["hyp_log"]})
            else:
                boot.setdefault("one_cpu_na", []).append(f"no BENCH-INFO line in {paths[0]}")
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

    gib_boot = next((x for x in boot.get("one_cpu", []) if x["vm_ram_mib"] == 1024), None)
    boot_row = {"name": "hyp_boot_1gib", "cpu": main["cpu"], "unit": "instructions",
                "notes": [ROW_NOTES["hyp_boot_1gib"]], "bare_qemu": None}
    if gib_boot:
        boot_row["ferrovisor"] = {"value": gib_boot["hypervisor_boot_instructions"],
                                  "stat": "one boot"}
    else:
        boot_row["ferrovisor"] = None
        boot_row["na"] = "no boot run with a 1 GiB VM"
    if "per_vm_ram_byte" in boot:
        boot_row["notes"].append(f"{boot['per_vm_ram_byte']:.3f} per byte of VM RAM, "
                                 f"{fmt(boot['fixed'])} fixed")
    add_reference_and_goal(boot_row)
    rows.append(boot_row)

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
    rows += linux_rows(linux, main["cpu"])

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
        "determinism": {**{c["cpu"]: {"ferrovisor": determinism(c["fv"]),
                                      "bare_qemu": determinism(c["bare"])} for c in configs},
                        **({f"{shared['cpu']}, shared CPU": {"ferrovisor": determinism(shared["fv"])}}
                           if shared else {})},
        "boot": boot,
        "footprint": footprint,
        "linux_boot": linux,
        "runs": {c["cpu"]: {"ferrovisor": [r["path"] for r in c["fv"]],
                            "bare_qemu": [r["path"] for r in c["bare"]]} for c in configs},
        "shared_runs": [r["path"] for r in shared["fv"]] if shared else None,
        "failed_runs": failed,
        "micro_failed_runs": micro_failed,
        "failures": [x for c in configs for r in c["fv"] + c["bare"] for x in r["fail"]]
                    + [x for r in (shared["fv"] if shared else []) for x in r["fail"]],
    }


def linux_rows(lx: dict, cpu: str) -> list:
    """`linux_run_init` and `linux_wall` from linux_boot.py's summary."""
    out = []
    fv, di = lx.get("ferrovisor", {}), lx.get("direct", {})
    for name, key, unit, digits in (("linux_run_init", "run_init_s", "seconds of guest time", 6),
                                    ("linux_wall", "wall_s", "host seconds", 2)):
        row = {"name": name, "cpu": lx.get("cpu", cpu), "unit": unit,
               "notes": [ROW_NOTES[name]]}
        f, d = fv.get(f"{key}_median"), di.get(f"{key}_median")
        row["ferrovisor"] = {"value": f, "stat": "median", "seconds": digits} if f else None
        row["bare_qemu"] = {"value": d, "stat": "median", "seconds": digits} if d else None
        if f and d:
            row["ratio"] = round(f / d, 3)
        else:
            row["na"] = (lx.get("reason") if lx.get("status") in ("n/a", "failed")
                         else "no boot reached userspace")
        add_reference_and_goal(row)
        out.append(row)
    return out


def cells(r: dict) -> dict:
    """The display cells of one row (shared by the text and markdown tables)."""
    f, b = r.get("ferrovisor"), r.get("bare_qemu")
    cpu = r["cpu"] + (f" ({r['trap']})" if r.get("trap") else "")
    refs = {k: (fmt(r["reference"][k]) if isinstance(r["reference"].get(k), (int, float))
                else r["reference"].get(k, ""))
            for k, _ in REF_COLUMNS} if r.get("reference") else {k: "" for k, _ in REF_COLUMNS}
    out = {"row": r["name"], "cpu": cpu, **refs, "goal": goal_text(r)}
    if r.get("na") and not f:
        out["na"] = r["na"]
        return out

    def value(x):
        if not x:
            return "n/a"
        if x.get("seconds"):
            return f"{x['value']:.{x['seconds']}f} s"
        return fmt(x.get("value"))

    ratio = r.get("ratio")
    out.update({
        "fv": value(f),
        "spread": (f"{fmt(f['p10'])}..{fmt(f['p90'])}" if f and "p10" in f
                   else (f or {}).get("derived", "")),
        "bare": value(b) if b else "n/a",
        "ratio": "" if ratio is None else (f"{ratio:,.3f}x" if ratio < 10 else f"{ratio:,.1f}x"),
    })
    return out


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
                   f"RAM (zeroed with DC ZVA and cleaned to the point of coherency, one "
                   f"64-byte block per step on this QEMU), about {fmt(b['fixed'])} fixed")
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

    seeds = lx.get("seeds") or []
    out.append(f"-cpu {lx.get('cpu', '?')}, -smp {lx.get('smp', '?')}, "
               f"{lx.get('memory', {}).get('vm_and_direct', '?')} for the guest; one boot "
               f"each with QEMU -seed {', '.join(map(str, seeds))} (the guest's RNDR values, "
               f"from which Linux seeds KASLR and its CRNG); the rows linux_run_init and "
               f"linux_wall above take the median over the seeds")
    for name, label in (("ferrovisor", "Ferrovisor"), ("direct", "direct")):
        side = lx.get(name, {})
        by_seed = side.get("run_init_s_by_seed") or {}
        vals = [v for v in by_seed.values() if v]
        spread = (f", spread {100 * (max(vals) - min(vals)) / min(vals):.1f} %"
                  if len(vals) > 1 else "")
        out.append(f"Run /init, {label}, by seed: "
                   + ", ".join(f"{k}: {v} s" for k, v in by_seed.items()) + spread)
    out.append("(Run /init is the kernel's printk time, counted from its sched_clock start: "
               "the hypervisor's own boot is not in it)")
    out.append(f"/proc/uptime read by /init, median over the seeds: Ferrovisor "
               f"{secs(fv.get('uptime_s_median'), 3)}, direct "
               f"{secs(di.get('uptime_s_median'), 3)}, ratio "
               f"{fmt(lx.get('uptime_s_ratio'), 3)} (10 ms resolution)")
    for name in ("ferrovisor", "direct"):
        side = lx.get(name, {})
        for rep in side.get("repeat", []):
            verdict = "identical" if side.get("identical") else "DIFFER"
            out.append(f"{name}, seed {rep['seed']} booted twice: {verdict} "
                       f"(Run /init {rep['run_init_s']} s, uptime {rep['uptime_s']} s)")
    out.append(f"wall clock QEMU start to userspace (noisy: shared machine): Ferrovisor "
               f"{fv.get('wall_s_all')}, direct {di.get('wall_s_all')}")
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


def top(counts: dict, n: int) -> str:
    """The `n` largest counts, then the rest summed (with the overflow the
    hypervisor itself counted as `others`)."""
    items = [(k, v) for k, v in counts.items() if v and k != "others"]
    shown = ", ".join(f"{k} {fmt(v)}" for k, v in items[:n])
    rest = sum(v for _, v in items[n:]) + counts.get("others", 0)
    return shown + (f", others {fmt(rest)}" if rest else "")


def exit_lines(d: dict) -> list[str]:
    """The summary of a Linux boot's exits (vm::stats, summed over vCPUs)."""
    st = (d["linux_boot"] or {}).get("exit_stats")
    if not st:
        return []
    if st.get("error"):
        return [f"n/a ({st['error']})"]
    ex, cl = st["exits"], st["class"]
    out = [f"one more Ferrovisor boot with `ferrovisor.exit_stats`, from power-on to "
           f"`poweroff -f` at the shell (its Run /init: {st.get('run_init_s')} s, not one "
           f"of the timed boots: counting costs a little per exit, and a boot's guest time "
           f"moves with any change that early): {fmt(ex.get('total', 0))} exits "
           f"({', '.join(f'vCPU {c}: {fmt(n)}' for c, n in st['cpus'].items())})",
           f"by cause: {top({k: v for k, v in ex.items() if k != 'total'}, 4)}",
           f"synchronous, by exception class: "
           f"{top(dict(sorted(cl.items(), key=lambda kv: -kv[1])), 6)}",
           f"MMIO (emulated device registers, :r read, :w write): {top(st['mmio'], 6)}",
           f"system registers: {top(st['sysreg'], 6)}",
           f"SMCCC calls: {top(st['smccc'], 6)}",
           f"physical interrupts taken (spurious: the acknowledge that ends a poll): "
           f"{top(dict(sorted(st['irq'].items(), key=lambda kv: -kv[1])), 7)}"]
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
    for one in d["boot"].get("one_cpu", []):
        reps = one.get("repeats", [])
        label = f"Ferrovisor boot, {one['vm_ram_mib']} MiB VM"
        if len(reps) < 2:
            out.append(f"{label}: not checked (one run)")
        elif len(set(reps)) == 1:
            out.append(f"{label}: runs 1 and 2 identical")
        else:
            out.append(f"{label}: runs DIFFER: {reps}")
    lx = d["linux_boot"]
    for name in ("ferrovisor", "direct"):
        side = lx.get(name)
        if not side:
            continue
        label = f"Linux boot, {name}"
        reps = side.get("repeat") or []
        seeds = ", ".join(str(r["seed"]) for r in reps) or "none"
        if side.get("identical"):
            out.append(f"{label}, seed {seeds} booted twice: identical in guest time")
        else:
            out.append(f"{label}, seed {seeds} booted twice: guest time DIFFERS "
                       f"({reps or 'not repeated'})")
    return out


def repeatable(d: dict) -> bool:
    """Whether every configuration's runs gave the same figures (micro runs, boot
    runs, Linux guest time)."""
    return all(x.endswith("identical") or x.endswith("identical in guest time")
               or "give the same table figures" in x
               for x in determinism_lines(d))


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


COLUMNS = (("row", "row"), ("cpu", "CPU"), ("fv", "Ferrovisor"), ("spread", "p10..p90"),
           ("bare", "bare QEMU"), ("ratio", "ratio"), ("bao", "Bao†"), ("xen", "Xen†"),
           ("kvm", "KVM/arm64†"), ("goal", "goal"))

REFERENCE_LEGEND = (
    "† Measured elsewhere on the same QEMU (10.0.2, TCG, -icount shift=0, 2 vCPUs) with "
    "kvm-unit-tests' micro-bench loop and the same guests, not by this run: Bao (static "
    "partitioning, its console warning for unknown calls silenced), Xen 4.17 (dom0less), "
    "KVM/arm64 (Linux 6.12, nested). That loop on bare QEMU: "
    + ", ".join(f"{n} {fmt(r['bare'])}" for n, r in REFERENCE.items() if "bare" in r)
    + ". " + "; ".join(f"{n}: {t}" for n, t in REFERENCE_NOTES.items()) + "."
)


def table(d: dict) -> str:
    out = ["Ferrovisor micro-benchmarks"] + header_lines(d) + [""]
    w = out.append
    all_cells = [(cells(r), r) for r in d["rows"]]
    widths = {k: max([len(h)] + [len(c.get(k, "")) for c, _ in all_cells if "na" not in c])
              for k, h in COLUMNS}
    line = "  ".join(h.ljust(widths[k]) for k, h in COLUMNS).rstrip()
    w(line)
    w("-" * len(line))
    for c, r in all_cells:
        if "na" in c:
            refs = "  ".join(f"{h} {c[k]}" for k, h in COLUMNS[6:9] if c.get(k))
            w(f"{c['row'].ljust(widths['row'])}  {c['cpu'].ljust(widths['cpu'])}  n/a ({c['na']})"
              + (f"  {refs}" if refs else "") + (f"  goal {c['goal']}" if c["goal"] else ""))
        else:
            w("  ".join(c.get(k, "").ljust(widths[k]) for k, _ in COLUMNS).rstrip())
        for n in r["notes"]:
            w(f"{'':{widths['row']}}    - {n}")
    w("")
    w(REFERENCE_LEGEND)
    w("")
    pm = [(r["name"] if r["cpu"] == d["cpus"][0] else f"{r['name']} ({r['cpu']})",
           r["cpu"], r["pmccntr"]["bare_qemu"]["value"]) for r in d["rows"]
          if r.get("pmccntr", {}).get("bare_qemu")]
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
    w("Linux boot (same kernel/initramfs/-cpu/-smp/-seed, A/B per seed):")
    out += ["  " + x for x in linux_lines(d)]
    ex = exit_lines(d)
    if ex:
        w("Linux boot's exits under Ferrovisor:")
        out += ["  " + x for x in ex]
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
        "hypervisor's instructions count too) unless its notes say otherwise, Ferrovisor "
        "beside the same operation on bare QEMU with no hypervisor; the CPU column says which "
        "`-cpu` the figure comes from; the goal column is the project's goal for the row and "
        "whether this run meets it.",
        "",
        "| " + " | ".join(h for _, h in COLUMNS) + " | notes |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|---|---|",
    ]
    for r in d["rows"]:
        c = cells(r)
        notes = md_escape("; ".join(r["notes"]))
        refs = " | ".join(md_escape(c.get(k, "")) for k, _ in COLUMNS[6:9])
        if "na" in c:
            out.append(f"| `{c['row']}` | {c['cpu']} | n/a | | | | {refs} | "
                       f"{md_escape(c['goal'])} | {md_escape(c['na'])}"
                       + (f"; {notes}" if notes else "") + " |")
        else:
            out.append(f"| `{c['row']}` | {c['cpu']} | {c['fv']} | {c['spread']} | {c['bare']} | "
                       f"{c['ratio']} | {refs} | {md_escape(c['goal'])} | {notes} |")
    out.append("")
    out.append(md_escape(REFERENCE_LEGEND))
    out.append("")
    out.append("- Repeatability: " + ("every figure above except wall-clock time ran twice "
                                      "and came out identical." if repeatable(d)
                                      else md_escape("; ".join(determinism_lines(d)))))
    for title, lines in (("Hypervisor boot", boot_lines(d)), ("Footprint", footprint_lines(d)),
                         ("Linux boot, Ferrovisor vs direct (A/B per seed)", linux_lines(d)),
                         ("A Linux boot's exits under Ferrovisor", exit_lines(d))):
        if not lines:
            continue
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
    ap.add_argument("--boot-1cpu", nargs="+", action="append", metavar="VM_MIB LOG",
                    help="one-CPU Ferrovisor runs with a VM of VM_MIB MiB, stopped early: "
                         "VM_MIB then the log of each run")
    ap.add_argument("--shared", nargs=3, metavar=("CPU", "LOG1", "LOG2"),
                    help="the bench guest's shared-CPU runs (bench=shared)")
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
