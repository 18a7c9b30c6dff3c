#!/usr/bin/env python3
"""The Linux boot comparison of `make bench`: the same kernel, initramfs, CPU
model and CPU count booted under Ferrovisor (A) and directly by QEMU (B),
alternated A/B so slow drift on a shared machine hits both alike: one pair per
`-seed` value, then the first seed's pair again (it must repeat exactly).

For each boot it records
  - wall_s: host seconds from starting QEMU to the marker line the initramfs's
    /init prints (FERROVISOR-LINUX-USERSPACE-UP). Noisy: it depends on what else
    the machine is doing.
  - uptime_s: the guest kernel's own /proc/uptime, which /init prints on the next
    line (`LINUX-INFO uptime_s=...`, 10 ms resolution). QEMU runs with
    `-icount shift=0,sleep=off`, so guest time advances exactly 1 ns per executed
    instruction (the hypervisor's included, nothing from the host's load): this
    is the repeatable figure.
  - run_init_s: the kernel's printk timestamp (1 us resolution) of
    "Run /init as init process", the same clock a few ms before the marker.
Both count from the kernel's timekeeping start: they leave out the kernel's
earliest boot (before its clock runs) and, under Ferrovisor, the hypervisor's own
boot (a row of the bench guest).

Repeatability: the guest's random numbers are the one input that differs from
run to run under icount. `-cpu max` has FEAT_RNG, and QEMU answers RNDR/RNDRRS
from the host's entropy unless `-seed` fixes its generator; Linux seeds KASLR and
its CRNG from them, so each boot's layout and hash seeds differ and so does its
guest time, a little (when the hypervisor's spin locks waited with ISB instead of
YIELD, by up to 23 % under Ferrovisor: see src/sync.rs). `dtb-randomness=off`
keeps QEMU's seeds out of the device tree and `-seed` (both boots, the same
value) pins RNDR: then every boot repeats to the microsecond, which the summary
checks (`identical`, the first seed booted twice); several seeds show how much
the guest's randomness moves the figure (`run_init_s_by_seed`).

Exit statistics: one more boot under Ferrovisor with `ferrovisor.exit_stats` on
its command line (QEMU `-append`, which reaches the hypervisor's
`/chosen/bootargs`) counts the guest's exits; once userspace is up the script
types `poweroff -f`, the VM's SYSTEM_OFF makes the hypervisor log its
`EXIT-STATS` lines (src/vm/stats.rs), and they are summed over the vCPUs into
`exit_stats`. Counting costs some instructions per exit, so that boot is not one
of the timed ones.

Writes a JSON object (see `summary` below) to --out; logs go to --logdir.
Standard library only.
"""

import argparse
import json
import os
import re
import selectors
import statistics
import subprocess
import sys
import time

MARKER = "FERROVISOR-LINUX-USERSPACE-UP"
TAG = re.compile(r"^\([^)]*\) ")  # the hypervisor console's "(vm) " prefix
UPTIME = re.compile(r"LINUX-INFO uptime_s=([0-9.]+)")
PANIC = re.compile(r"Kernel panic - not syncing: (.*)")
RUN_INIT = re.compile(r"^\[\s*([0-9]+\.[0-9]+)\] Run /init as init process")
# Serial lines kept in a log: the first and the last ones (a guest stuck in a
# loop of warnings can print megabytes).
LOG_HEAD, LOG_TAIL = 5000, 1000


def boot(args: list[str], marker: str, timeout: float, log_path: str,
         poweroff: bool = False) -> dict:
    """Runs QEMU until the marker and the uptime line (or the timeout); kills it.
    With `poweroff`, types `poweroff -f` on the guest's shell once the uptime
    line is out and waits for QEMU to exit (the hypervisor powers the machine off
    after the last VM), collecting the EXIT-STATS lines."""
    start = time.monotonic()
    proc = subprocess.Popen(args, stdin=subprocess.PIPE if poweroff else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf = b""
    lines = {"head": [], "tail": [], "dropped": 0}
    result = {"reached": False, "wall_s": None, "uptime_s": None, "run_init_s": None}
    stats_lines = []
    typed = False
    after_marker_deadline = None
    try:
        while True:
            now = time.monotonic()
            deadline = start + timeout
            if after_marker_deadline is not None:
                deadline = min(deadline, after_marker_deadline)
            if now >= deadline:
                break
            if not sel.select(timeout=min(1.0, deadline - now)):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                # QEMU closed its output: it is exiting; collect its status.
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
                break
            buf += chunk
            *complete, buf = buf.split(b"\n")
            for raw in complete:
                line = raw.decode("utf-8", "replace").replace("\r", "")
                keep(lines, line)
                m = PANIC.search(line)
                if m and "panic" not in result:
                    # No userspace after this: stop soon instead of at the timeout
                    # (a guest panic leaves QEMU running under a hypervisor).
                    result["panic"] = m.group(1).strip()
                    after_marker_deadline = time.monotonic() + 2
                m = RUN_INIT.search(TAG.sub("", line))
                if m:
                    result["run_init_s"] = float(m.group(1))
                if not result["reached"] and marker in line:
                    result["reached"] = True
                    result["wall_s"] = round(time.monotonic() - start, 3)
                    # The uptime line follows at once; don't wait long for it.
                    after_marker_deadline = time.monotonic() + 30
                m = UPTIME.search(line)
                if result["reached"] and m:
                    result["uptime_s"] = float(m.group(1))
                if "EXIT-STATS " in line:
                    stats_lines.append(line[line.index("EXIT-STATS "):])
            if result["reached"] and result["uptime_s"] is not None:
                if not poweroff:
                    break
                if not typed:
                    # The shell starts right after the uptime line; what is typed
                    # before its prompt waits in the console's input queue.
                    proc.stdin.write(b"poweroff -f\n")
                    proc.stdin.flush()
                    typed = True
                    after_marker_deadline = time.monotonic() + 60
    finally:
        exit_status = proc.poll()
        proc.kill()
        proc.wait()
        sel.close()
        if buf:
            keep(lines, buf.decode("utf-8", "replace").replace("\r", ""))
        with open(log_path, "w") as f:
            f.write("$ " + " ".join(args) + "\n")
            f.write("\n".join(lines["head"]) + "\n")
            if lines["dropped"]:
                f.write(f"... {lines['dropped']} lines not kept ...\n")
            f.write("\n".join(lines["tail"]) + "\n")
    result["log"] = log_path
    if poweroff:
        result["exit_stats_lines"] = stats_lines
        result["exit_status"] = exit_status
    if not result["reached"]:
        if "panic" in result:
            result["error"] = f"guest kernel panic: {result['panic']} (see {log_path})"
        elif exit_status is None:
            result["error"] = f"no '{marker}' line within {timeout:.0f} s (killed; see {log_path})"
        else:
            result["error"] = f"QEMU exited ({exit_status}) before '{marker}' (see {log_path})"
    return result


def keep(lines: dict, line: str) -> None:
    if len(lines["head"]) < LOG_HEAD:
        lines["head"].append(line)
        return
    lines["tail"].append(line)
    if len(lines["tail"]) > LOG_TAIL:
        lines["tail"].pop(0)
        lines["dropped"] += 1


STATS_HEAD = re.compile(r"EXIT-STATS cpu=(\d+) vmid=(\d+) (\S+)(.*)")


def exit_stats(lines: list[str]) -> dict:
    """The EXIT-STATS lines of one boot, summed over CPUs: `exits` (by cause, and
    `total`), `class`, `sysreg`, `mmio`, `smccc`, `irq` as {key: count}, and
    `cpus`, each CPU's total."""
    out = {"cpus": {}, "exits": {}, "class": {}, "sysreg": {}, "mmio": {}, "smccc": {},
           "irq": {}}
    for line in lines:
        m = STATS_HEAD.match(line)
        if not m:
            continue
        cpu, what, rest = m.group(1), m.group(3), m.group(4)
        pairs = {}
        for word in rest.split():
            key, _, value = word.rpartition("=")
            if key and value.isdigit():
                pairs[key] = int(value)
        if what.startswith("exits="):
            total = int(what.partition("=")[2])
            out["cpus"][cpu] = total
            pairs["total"] = total
            what = "exits"
        if what not in out:
            continue
        for k, v in pairs.items():
            out[what][k] = out[what].get(k, 0) + v
    for what in ("sysreg", "mmio", "smccc"):
        out[what] = dict(sorted(out[what].items(), key=lambda kv: (-kv[1], kv[0])))
    return out


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--qemu", default=os.environ.get("FERROVISOR_QEMU", "qemu-system-aarch64"))
    ap.add_argument("--hypervisor", required=True, help="ferrovisor.bin")
    ap.add_argument("--bundle", required=True, help="boot bundle of the Linux VM")
    ap.add_argument("--kernel", required=True, help="the same kernel Image, for the direct boot")
    ap.add_argument("--initrd", required=True)
    ap.add_argument("--append", default="", help="kernel command line of the direct boot")
    ap.add_argument("--cpu", default="max")
    ap.add_argument("--smp", type=int, default=2)
    ap.add_argument("--vm-memory", required=True,
                    help="the VM's RAM (QEMU -m of the direct boot, so both kernels see the same)")
    ap.add_argument("--host-memory", default="1G", help="QEMU -m under Ferrovisor")
    ap.add_argument("--seeds", default="1,2,3",
                    help="QEMU -seed values (the guest's RNDR values), comma-separated: "
                         "one A/B pair per seed, then the first seed's pair again")
    ap.add_argument("--no-exit-stats", action="store_true",
                    help="skip the extra boot that counts the guest's exits")
    ap.add_argument("--timeout", type=float, default=150)
    ap.add_argument("--marker", default=MARKER)
    ap.add_argument("--logdir", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    # The RTC follows guest time from a fixed date, so the wall-clock date the
    # kernel reads at boot is the same every run.
    seeds = [int(x) for x in a.seeds.split(",") if x.strip()]
    icount = ["-icount", "shift=0,sleep=off", "-rtc", "base=2025-01-01T00:00:00,clock=vm"]
    common = ["-cpu", a.cpu, "-smp", str(a.smp), "-nographic", "-no-reboot"] + icount

    def under(seed):
        return [a.qemu, "-M", "virt,virtualization=on,gic-version=3,dtb-randomness=off",
                "-m", a.host_memory, *common, "-seed", str(seed),
                "-kernel", a.hypervisor, "-initrd", a.bundle]

    def direct(seed):
        cmd = [a.qemu, "-M", "virt,gic-version=3,dtb-randomness=off", "-m", a.vm_memory,
               *common, "-seed", str(seed), "-kernel", a.kernel, "-initrd", a.initrd]
        return cmd + (["-append", a.append] if a.append else [])

    os.makedirs(a.logdir, exist_ok=True)
    runs = {"ferrovisor": [], "direct": []}
    skip_ferrovisor = False
    plan = [(seed, 1) for seed in seeds] + [(seeds[0], 2)]
    for r, (seed, repeat) in enumerate(plan, 1):
        for name, cmd in (("ferrovisor", under), ("direct", direct)):
            if name == "ferrovisor" and skip_ferrovisor:
                continue
            res = boot(cmd(seed), a.marker, a.timeout,
                       os.path.join(a.logdir, f"linux-{name}-seed{seed}-{repeat}.log"))
            res["round"] = r
            res["seed"] = seed
            res["repeat"] = repeat
            runs[name].append(res)
            print(f"linux boot {name} #{r}: " +
                  (f"userspace after {res['wall_s']} s wall, uptime {res['uptime_s']} s, "
                   f"Run /init at {res['run_init_s']} s"
                   if res["reached"] else res["error"]), file=sys.stderr)
            # A Ferrovisor that cannot boot Linux fails the same way every time:
            # don't spend the time budget on it again.
            if name == "ferrovisor" and not res["reached"]:
                skip_ferrovisor = True

    stats = None
    if not a.no_exit_stats and not skip_ferrovisor:
        res = boot(under(seeds[0]) + ["-append", "ferrovisor.exit_stats"], a.marker, a.timeout,
                   os.path.join(a.logdir, "linux-ferrovisor-exit-stats.log"), poweroff=True)
        stats = {"reached": res["reached"], "run_init_s": res["run_init_s"],
                 "log": res["log"], "exit_status": res.get("exit_status")}
        if res.get("exit_stats_lines"):
            stats.update(exit_stats(res["exit_stats_lines"]))
        else:
            stats["error"] = res.get("error") or (
                f"no EXIT-STATS lines after poweroff (see {res['log']})")
        print(f"linux boot ferrovisor with exit statistics: "
              f"{stats.get('exits', {}).get('total', 'no')} exits", file=sys.stderr)

    summary = {
        "status": "ok" if all(x["reached"] for v in runs.values() for x in v) else "failed",
        "order": "A/B alternated: ferrovisor, direct per seed, then the first seed again",
        "qemu_icount": "shift=0,sleep=off",
        "seeds": seeds,
        "exit_stats": stats,
        "cpu": a.cpu, "smp": a.smp,
        "memory": {"ferrovisor_host": a.host_memory, "vm_and_direct": a.vm_memory},
        "runs": runs,
    }
    for name, v in runs.items():
        ok = [x for x in v if x["reached"]]
        first = [x for x in ok if x["repeat"] == 1]
        again = [(x, y) for x in ok if x["repeat"] == 2
                 for y in first if y["seed"] == x["seed"]]
        summary[name] = {
            "boots": len(v),
            "reached": len(ok),
            # Guest time: the median over the seeds (each seed's boot is exact, the
            # seeds show how much the guest's random numbers move it).
            "uptime_s_median": median(x["uptime_s"] for x in first),
            "run_init_s_median": median(x["run_init_s"] for x in first),
            "run_init_s_by_seed": {str(x["seed"]): x["run_init_s"] for x in first},
            "uptime_s_by_seed": {str(x["seed"]): x["uptime_s"] for x in first},
            "wall_s_median": median(x["wall_s"] for x in ok),
            "wall_s_all": [x["wall_s"] for x in ok],
            # The first seed booted again: the same guest-time figures to the
            # microsecond, what icount with a fixed seed promises (wall clock
            # never is).
            "identical": bool(again) and all(
                (x["run_init_s"], x["uptime_s"]) == (y["run_init_s"], y["uptime_s"])
                for x, y in again),
            "repeat": [{"seed": x["seed"], "run_init_s": [y["run_init_s"], x["run_init_s"]],
                        "uptime_s": [y["uptime_s"], x["uptime_s"]]} for x, y in again],
        }
    for key in ("wall_s_median", "uptime_s_median", "run_init_s_median"):
        f, d = summary["ferrovisor"][key], summary["direct"][key]
        summary[key.replace("_median", "_ratio")] = round(f / d, 3) if f and d else None
    with open(a.out, "w") as f:
        json.dump(summary, f, indent=2)
    return 0 if summary["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
