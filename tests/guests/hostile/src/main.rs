//! The hostile guest of the isolation test (issue 4, item 5): it runs beside the
//! victim guest (`boards/qemu-virt/isolation.toml`) and reaches for everything that
//! is not its own. Every attempt must end in an abort the hypervisor injects — never
//! a value read from foreign memory, never a write that lands, never a hang — and
//! afterwards the guest crashes into an exception loop on purpose, which must not
//! disturb the victim either.
//!
//! What it tries (each a `PASS:`/`FAIL:` line; the harness counts them):
//! - its own RAM and device tree: writable (the baseline: these must work);
//! - loads and stores at every 2 MiB from the end of its RAM up to 0x8000_0000 (on
//!   the test's 1 GiB QEMU all host RAM — the victim's, the hypervisor's image, heap
//!   and page tables — lies at these addresses in host-physical terms), and every
//!   64 MiB up to 0xc000_0000: each a synchronous External abort (EC 0x25, DFSC 0x10)
//!   with FAR = the address;
//! - accesses the hypervisor cannot emulate (ISV = 0: load/store pair, exclusive,
//!   SIMD, DC ZVA) at the first address past its RAM: aborts too;
//! - devices of the board it was not given: flash, the page after its PL011, RTC,
//!   fw_cfg, GPIO, virtio-mmio, PCIe, the redistributor frame of a vCPU it does not
//!   have: aborts;
//! - high IPAs through its own stage-1 tables (48-bit VA, IPS = its PARange): 4 GiB,
//!   virt's high redistributor and ECAM windows, either side of 2^39, the top of its
//!   PA range: aborts;
//! - its stage-1 table walks reaching an unmapped IPA and an emulated device's IPA:
//!   aborts (the walk must not be "emulated" as an MMIO load);
//! - wild jumps to unmapped IPAs: instruction aborts (EC 0x21, IFSC 0x10), FAR = ELR
//!   = the target, caught by a vector table of its own;
//! - EL2 registers and instructions from EL1 (VTTBR_EL2, TLBI ALLE1, AT S12E1R):
//!   UNDEFINED;
//! - PSCI: CPU_ON / AFFINITY_INFO for an MPIDR that is not one of its vCPUs
//!   (the victim's in host terms): INVALID_PARAMETERS;
//! - its own emulated devices used as no driver would (odd sizes, pairs, writes to
//!   ID registers, SGI broadcasts): any answer, as long as there is one.
//! - its console: lines forged after a carriage return or backspaces, cursor
//!   movement and erasure, hidden text, terminal queries, C1 controls, a
//!   right-to-left override ([`CONSOLE_ATTACKS`]); the harness checks the raw
//!   serial bytes, nothing of it may act on the terminal.
//!
//! Then it prints `N passed, M failed` and, instead of powering off, points
//! VBAR_EL1 at an IPA with nothing behind it and executes UDF: each exception entry
//! is an instruction abort at stage 2, which the hypervisor injects, which enters the
//! same vector again — an exception loop for as long as the machine runs. The VM
//! never powers off, so the machine does not either; `tests/isolation.rs` ends the run
//! once the victim has reported.
#![no_std]
#![no_main]
#![deny(clippy::undocumented_unsafe_blocks)]

#[path = "../../victim/src/fdt.rs"]
#[allow(dead_code)]
mod fdt;
mod stage1;

use core::arch::asm;
use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

use guest_rt::exception::{DFSC_SYNC_EXTERNAL_ABORT, EC_DATA_ABORT_SAME_EL, EC_UNKNOWN};
use guest_rt::{ExceptionInfo, catch_exception, expect_exception, hvc_call, println};

guest_rt::entry!(main);

/// `ESR_ELx.EC`: Instruction Abort taken without a change of exception level.
const EC_INSTRUCTION_ABORT_SAME_EL: u8 = 0x21;
/// A value no device or RAM of this test holds by chance.
const POISON: u64 = 0x4057_11e0_4057_11e0;

static PASSED: AtomicU32 = AtomicU32::new(0);
static FAILED: AtomicU32 = AtomicU32::new(0);

/// One check line, counted here as well because this guest prints its summary
/// without powering off (the runtime's `finish` would).
fn check(name: &str, ok: bool, detail: fmt::Arguments<'_>) {
    guest_rt::check::report(name, ok, detail);
    if ok {
        PASSED.fetch_add(1, Ordering::SeqCst);
    } else {
        FAILED.fetch_add(1, Ordering::SeqCst);
    }
}

/// What one access did.
#[derive(Clone, Copy, Debug)]
enum Outcome {
    /// It completed (a load's value; 0 for a store).
    Completed(u64),
    /// It took a synchronous exception.
    Exception(ExceptionInfo),
}

impl Outcome {
    /// The hypervisor's answer to an access with nothing behind it: a synchronous
    /// External abort on the data access, reported at `far`.
    fn is_external_abort_at(&self, far: u64) -> bool {
        matches!(self, Outcome::Exception(i)
            if i.ec() == EC_DATA_ABORT_SAME_EL
                && i.dfsc() == DFSC_SYNC_EXTERNAL_ABORT
                && !i.fnv()
                && i.far == far)
    }

    /// Any data abort reported at `far` (for stage-1 walks, where the hypervisor may
    /// report the External abort as on a translation table walk, DFSC 0x14..=0x17).
    fn is_data_abort_at(&self, far: u64) -> bool {
        matches!(self, Outcome::Exception(i)
            if i.ec() == EC_DATA_ABORT_SAME_EL
                && (i.dfsc() == DFSC_SYNC_EXTERNAL_ABORT || (0x14..=0x17).contains(&i.dfsc()))
                && (i.fnv() || i.far == far))
    }

    fn is_undefined(&self) -> bool {
        matches!(self, Outcome::Exception(i) if i.ec() == EC_UNKNOWN)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Completed(v) => write!(f, "completed, value {v:#x}"),
            Outcome::Exception(i) => write!(f, "exception {i}"),
        }
    }
}

fn outcome(r: Result<u64, ExceptionInfo>) -> Outcome {
    match r {
        Ok(v) => Outcome::Completed(v),
        Err(i) => Outcome::Exception(i),
    }
}

fn load(addr: u64) -> Outcome {
    outcome(catch_exception(|| {
        let v: u64;
        // SAFETY: a load from an address this guest does not own: it aborts (recorded
        // and skipped by the armed vector) or reads a value that is only reported.
        unsafe {
            asm!("ldr {v}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack, readonly))
        };
        v
    }))
}

fn store(addr: u64) -> Outcome {
    outcome(catch_exception(|| {
        // SAFETY: a store to an address this guest does not own: it must abort; if
        // it lands, the check fails (and the victim's pattern check may too).
        unsafe { asm!("str {v}, [{a}]", a = in(reg) addr, v = in(reg) POISON, options(nostack)) };
        0
    }))
}

fn main(dtb: u64) -> ! {
    println!("Ferrovisor hostile guest: reaching for what is not mine");
    // SAFETY: the boot protocol puts the device tree in guest RAM at x0.
    let tree = unsafe { fdt::Fdt::at(dtb) };
    if tree
        .and_then(|t| t.bootargs())
        .is_some_and(|args| fdt::bootarg(args, "role") == Some("spin_masked"))
    {
        spin_masked();
    }
    let Some((ram_base, ram_size)) = tree.and_then(|t| t.memory()) else {
        check(
            "hostile: device tree names my RAM",
            false,
            format_args!("no /memory reg in the tree at {dtb:#x}"),
        );
        crash()
    };
    let ram_end = ram_base + ram_size;
    println!("hostile: my RAM is {ram_base:#x}..{ram_end:#x}, device tree at {dtb:#x}");

    own_memory(dtb, ram_end);
    beyond_ram(ram_end);
    not_emulable(ram_end);
    devices();
    own_devices();
    let pa_bits = stage1::install();
    println!("hostile: own stage-1 tables: 48-bit VA, {pa_bits}-bit IPS");
    high_ipas(pa_bits);
    table_walks(ram_end);
    wild_jumps(ram_end, pa_bits);
    el2_from_el1();
    psci();
    console_attacks();

    let (passed, failed) = (PASSED.load(Ordering::SeqCst), FAILED.load(Ordering::SeqCst));
    println!("{passed} passed, {failed} failed");
    crash()
}

/// `role=spin_masked`: takes the CPU and never gives it back of its own accord —
/// every interrupt masked (PSTATE.DAIF), no WFI, no exit — so a vCPU sharing its
/// physical CPU runs only because the hypervisor's preemption tick (the EL2
/// timer, which no EL1 mask reaches) ends its slices.
fn spin_masked() -> ! {
    println!("hostile: spinning with interrupts masked");
    // SAFETY: masks this vCPU's own exceptions; nothing else of the guest runs after.
    unsafe { asm!("msr daifset, #0xf", options(nostack, nomem)) };
    loop {
        core::hint::spin_loop();
    }
}

/// The baseline: its own RAM and device tree are plain memory.
fn own_memory(dtb: u64, ram_end: u64) {
    let last = ram_end - 8;
    let w = store(last);
    let r = load(last);
    check(
        "hostile: the last word of my RAM is writable",
        matches!(w, Outcome::Completed(_)) && matches!(r, Outcome::Completed(POISON)),
        format_args!("store {w}, load {r}"),
    );

    // boot_cpuid_phys (header offset 0x1c): written and put back.
    let field = (dtb + 0x1c) as *mut u32;
    // SAFETY: the device tree lies in this guest's RAM (Fdt::at checked its header);
    // the field is restored before anything reads it.
    let ok = unsafe {
        let old = field.read_volatile();
        field.write_volatile(!old);
        let changed = field.read_volatile() == !old;
        field.write_volatile(old);
        changed
    };
    check(
        "hostile: my device tree is writable",
        ok,
        format_args!("the write did not stick"),
    );

    // 0x4020_0000 is where the hypervisor's image lies in host-physical terms; in this
    // VM's IPA space it is the VM's own RAM, with no hypervisor there.
    let magic = load(0x4020_0038);
    check(
        "hostile: IPA 0x4020_0000 (the hypervisor's PA) is my own RAM, not the hypervisor's Image",
        matches!(magic, Outcome::Completed(v) if v as u32 != 0x644d_5241),
        format_args!("load of the Image magic's place: {magic}"),
    );
}

/// Loads and stores from the end of RAM to 0xc000_0000.
fn beyond_ram(ram_end: u64) {
    let addrs = || {
        (ram_end..0x8000_0000)
            .step_by(2 << 20)
            .chain((0x8000_0000..0xc000_0000).step_by(64 << 20))
    };
    for (what, probe) in [("loads", load as fn(u64) -> Outcome), ("stores", store)] {
        let mut count = 0;
        let mut first_bad: Option<(u64, Outcome)> = None;
        for a in addrs() {
            count += 1;
            let o = probe(a);
            if !o.is_external_abort_at(a) && first_bad.is_none() {
                first_bad = Some((a, o));
            }
        }
        let name = if what == "loads" {
            "hostile: loads beyond my RAM up to 0xc000_0000 all abort (SEA, FAR = address)"
        } else {
            "hostile: stores beyond my RAM up to 0xc000_0000 all abort (SEA, FAR = address)"
        };
        match first_bad {
            None => check(name, true, format_args!("")),
            Some((a, o)) => check(
                name,
                false,
                format_args!("{count} {what} from {ram_end:#x}: at {a:#x}: {o}"),
            ),
        }
    }
}

/// Accesses whose syndrome carries no register information (ISV = 0): the
/// hypervisor cannot emulate them and must abort them, not skip or misread them.
fn not_emulable(ram_end: u64) {
    let a = ram_end;
    let pair = outcome(catch_exception(|| {
        let (x, y): (u64, u64);
        // SAFETY: a load pair from an unowned address: aborts or is reported.
        unsafe {
            asm!("ldp {x}, {y}, [{a}]", a = in(reg) a, x = out(reg) x, y = out(reg) y, options(nostack, readonly))
        };
        x ^ y
    }));
    let store_pair = outcome(catch_exception(|| {
        // SAFETY: a store pair to an unowned address: must abort.
        unsafe { asm!("stp {v}, {v}, [{a}]", a = in(reg) a, v = in(reg) POISON, options(nostack)) };
        0
    }));
    let exclusive = outcome(catch_exception(|| {
        let v: u64;
        // SAFETY: an exclusive load from an unowned address: aborts or is reported;
        // CLREX drops the monitor either way.
        unsafe {
            asm!("ldxr {v}, [{a}]", "clrex", a = in(reg) a, v = out(reg) v, options(nostack, readonly))
        };
        v
    }));
    let simd = outcome(catch_exception(|| {
        let v: u64;
        // SAFETY: a 128-bit SIMD load from an unowned address into a scratch vector
        // register (FP/SIMD is enabled by the runtime).
        unsafe {
            asm!("ldr q16, [{a}]", "fmov {v}, d16", a = in(reg) a, v = out(reg) v, out("v16") _, options(nostack, readonly))
        };
        v
    }));
    let zva = outcome(catch_exception(|| {
        // SAFETY: DC ZVA zeroes a block at an unowned address: must abort.
        unsafe { asm!("dc zva, {a}", a = in(reg) a, options(nostack)) };
        0
    }));
    for (name, o) in [
        ("hostile: LDP past my RAM aborts", pair),
        ("hostile: STP past my RAM aborts", store_pair),
        ("hostile: LDXR past my RAM aborts", exclusive),
        ("hostile: SIMD LDR Q past my RAM aborts", simd),
        ("hostile: DC ZVA past my RAM aborts", zva),
    ] {
        check(
            name,
            o.is_external_abort_at(a),
            format_args!("at {a:#x}: {o}"),
        );
    }
    // Cache maintenance by VA to an unowned IPA: nothing to clean, the guest may see
    // an abort or nothing — but it must come back.
    let civac = outcome(catch_exception(|| {
        // SAFETY: DC CIVAC only cleans/invalidates; at an unowned address it has
        // nothing to act on.
        unsafe { asm!("dc civac, {a}", a = in(reg) a, options(nostack)) };
        0
    }));
    check(
        "hostile: DC CIVAC past my RAM returns (completes or aborts)",
        matches!(civac, Outcome::Completed(_)) || civac.is_data_abort_at(a),
        format_args!("at {a:#x}: {civac}"),
    );
}

/// QEMU virt devices this VM was not given (its PL011 at 0x0900_0000 and the virtual
/// GIC are all it has).
fn devices() {
    const DEVICES: [(u64, &str); 12] = [
        (0x0000_0000, "flash 0 (firmware)"),
        (0x0400_0000, "flash 1"),
        // vCPU 0's redistributor is 0x080a_0000..0x080c_0000; this VM has no vCPU 1.
        (0x080c_0008, "GICR_TYPER of a vCPU this VM does not have"),
        (0x0900_1000, "the page after my PL011"),
        (0x0901_0000, "PL031 RTC"),
        (0x0902_0000, "fw_cfg"),
        (0x0903_0000, "PL061 GPIO"),
        (0x0a00_0000, "virtio-mmio transport 0"),
        (0x0a00_3e00, "virtio-mmio transport 31"),
        (0x0c00_0000, "platform bus"),
        (0x1000_0000, "PCIe MMIO window"),
        (0x3f00_0000, "PCIe ECAM"),
    ];
    for (addr, what) in DEVICES {
        let l = load(addr);
        let s = store(addr);
        let mut name = Line::new();
        let _ = fmt::write(
            &mut name,
            format_args!("hostile: {what} at {addr:#x}: load and store abort"),
        );
        check(
            name.as_str(),
            l.is_external_abort_at(addr) && s.is_external_abort_at(addr),
            format_args!("load {l}; store {s}"),
        );
    }
}

/// Accesses to its own emulated devices that no guest driver makes: odd sizes, a
/// pair, writes to read-only ID registers, SGI broadcasts. Any answer will do — a
/// value, a write ignored, an abort, an UNDEF — as long as the hypervisor gives one
/// and carries on.
fn own_devices() {
    let answered =
        |o: &Outcome, addr: u64| matches!(o, Outcome::Completed(_)) || o.is_external_abort_at(addr);
    let load8 = |addr: u64| {
        outcome(catch_exception(|| {
            let v: u32;
            // SAFETY: a byte load from an emulated device register of this VM.
            unsafe {
                asm!("ldrb {v:w}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack, readonly))
            };
            u64::from(v)
        }))
    };
    let load_pair = |addr: u64| {
        outcome(catch_exception(|| {
            let (x, y): (u64, u64);
            // SAFETY: a load pair (ISV = 0) from an emulated device of this VM.
            unsafe {
                asm!("ldp {x}, {y}, [{a}]", a = in(reg) addr, x = out(reg) x, y = out(reg) y, options(nostack, readonly))
            };
            x ^ y
        }))
    };
    let store32 = |addr: u64| {
        outcome(catch_exception(|| {
            // SAFETY: a 32-bit store to a read-only ID register of this VM's device.
            unsafe {
                asm!("str {v:w}, [{a}]", a = in(reg) addr, v = in(reg) POISON as u32, options(nostack))
            };
            0
        }))
    };

    // PL011 (PL011 TRM 3.2): UARTFR at 0x18; the ID registers at 0xfe0..0xfff are
    // read-only.
    let mut bad: Option<(u64, Outcome)> = None;
    for (addr, o) in [
        (0x0900_0018, load(0x0900_0018)),
        (0x0900_0fe1, load8(0x0900_0fe1)),
        (0x0900_0010, load_pair(0x0900_0010)),
        (0x0900_0fe0, store32(0x0900_0fe0)),
        (0x0900_0ff8, load(0x0900_0ff8)),
    ] {
        if !answered(&o, addr) && bad.is_none() {
            bad = Some((addr, o));
        }
    }
    check(
        "hostile: odd accesses to my PL011 (64-bit, byte, pair, ID write) get an answer",
        bad.is_none(),
        format_args!("{bad:x?}"),
    );

    // The GIC window: distributor, ITS, vCPU 0's redistributor (RD_base, SGI_base).
    let mut bad: Option<(u64, Outcome)> = None;
    for (addr, o) in [
        (0x0800_0000, load(0x0800_0000)),
        (0x0800_0401, load8(0x0800_0401)),
        (0x0800_fff8, load(0x0800_fff8)),
        (0x0800_0000, load_pair(0x0800_0000)),
        (0x0808_0000, load(0x0808_0000)),
        (0x080a_fff8, load(0x080a_fff8)),
        (0x080b_0ff8, load(0x080b_0ff8)),
    ] {
        if !answered(&o, addr) && bad.is_none() {
            bad = Some((addr, o));
        }
    }
    check(
        "hostile: odd loads from my GIC window (64-bit, byte, pair, ends of frames, ITS) get an answer",
        bad.is_none(),
        format_args!("{bad:x?}"),
    );

    // ICC_SGI1R_EL1 (Arm GIC v3 12.2.21): IRM = 1 (bit 40) sends to every PE but
    // the sender; a target list of 0xffff names 16 PEs of Aff1 = 0. Only this VM's
    // vCPUs may see them (it has one, and keeps interrupts masked).
    let mut bad: Option<Outcome> = None;
    for value in [1u64 << 40, 0xffff, (15 << 24) | 0xffff] {
        let o = outcome(catch_exception(|| {
            // SAFETY: an SGI request; this guest has IRQs masked, so nothing is taken.
            unsafe { asm!("msr S3_0_C12_C11_5, {v}", "isb", v = in(reg) value, options(nostack)) };
            0
        }));
        if !(matches!(o, Outcome::Completed(_)) || o.is_undefined()) && bad.is_none() {
            bad = Some(o);
        }
    }
    check(
        "hostile: SGI broadcasts through ICC_SGI1R_EL1 get an answer",
        bad.is_none(),
        format_args!("{bad:x?}"),
    );
}

/// IPAs above 4 GiB, through the guest's own stage-1 tables ([`stage1`]).
fn high_ipas(pa_bits: u32) {
    for (addr, what) in stage1::high_data_targets(pa_bits) {
        let l = load(addr);
        let s = store(addr);
        let mut name = Line::new();
        let _ = fmt::write(
            &mut name,
            format_args!("hostile: high IPA {addr:#x} ({what}): load and store abort"),
        );
        check(
            name.as_str(),
            l.is_external_abort_at(addr) && s.is_external_abort_at(addr),
            format_args!("load {l}; store {s}"),
        );
    }
}

/// Stage-1 table walks that reach IPAs without RAM behind them.
fn table_walks(ram_end: u64) {
    for (table, what) in [
        (ram_end, "an unmapped IPA"),
        (0x0900_0000, "my PL011's IPA (emulated, not memory)"),
    ] {
        let va = stage1::map_table_at(table);
        let o = load(va);
        let mut name = Line::new();
        let _ = fmt::write(
            &mut name,
            format_args!("hostile: a stage-1 walk through a table at {what} aborts"),
        );
        check(
            name.as_str(),
            o.is_data_abort_at(va),
            format_args!("load from VA {va:#x} (level-1 table at IPA {table:#x}): {o}"),
        );
    }
    stage1::unmap_walk_tests();
}

/// Branches to addresses with nothing behind them at stage 2.
fn wild_jumps(ram_end: u64, pa_bits: u32) {
    for target in [
        ram_end,
        0x8000_0000,
        0x1_4000_0000,
        stage1::high_code_target(pa_bits),
    ] {
        let r = stage1::jump(target);
        let ok = matches!(r, Some(i)
            if i.ec() == EC_INSTRUCTION_ABORT_SAME_EL
                && i.dfsc() == DFSC_SYNC_EXTERNAL_ABORT
                && i.far == target
                && i.elr == target);
        let mut name = Line::new();
        let _ = fmt::write(
            &mut name,
            format_args!("hostile: a jump to unmapped IPA {target:#x} is an instruction abort"),
        );
        check(name.as_str(), ok, format_args!("got {r:x?}"));
    }
}

/// The hypervisor's own controls are out of EL1's reach.
fn el2_from_el1() {
    let undefined = |f: fn()| {
        outcome(match expect_exception(f) {
            Some(i) => Err(i),
            None => Ok(0),
        })
    };
    let read_vttbr = undefined(|| {
        // SAFETY: MRS of an EL2 register at EL1 UNDEFs and is skipped.
        unsafe { asm!("mrs {t}, vttbr_el2", t = out(reg) _, options(nostack, nomem)) }
    });
    let write_vttbr = undefined(|| {
        // SAFETY: MSR of an EL2 register at EL1 UNDEFs and is skipped.
        unsafe { asm!("msr vttbr_el2, xzr", options(nostack, nomem)) }
    });
    let tlbi = undefined(|| {
        // SAFETY: TLBI ALLE1 is EL2-only: UNDEFINED at EL1, skipped.
        unsafe { asm!("tlbi alle1", options(nostack, nomem)) }
    });
    let at = undefined(|| {
        // SAFETY: AT S12E1R is EL2-only: UNDEFINED at EL1, skipped.
        unsafe { asm!("at s12e1r, {a}", a = in(reg) 0x4000_0000u64, options(nostack, nomem)) }
    });
    for (name, o) in [
        ("hostile: MRS VTTBR_EL2 is UNDEFINED", read_vttbr),
        ("hostile: MSR VTTBR_EL2 is UNDEFINED", write_vttbr),
        ("hostile: TLBI ALLE1 is UNDEFINED", tlbi),
        ("hostile: AT S12E1R is UNDEFINED", at),
    ] {
        check(name, o.is_undefined(), format_args!("{o}"));
    }
}

/// PSCI calls about CPUs that are not this VM's.
fn psci() {
    const CPU_ON_64: u32 = 0xc400_0003;
    const AFFINITY_INFO_64: u32 = 0xc400_0004;
    const INVALID_PARAMETERS: u64 = -2i64 as u64;
    const ALREADY_ON: u64 = -4i64 as u64;
    let entry = 0x4008_0000;
    let r = hvc_call(CPU_ON_64, 1, entry, 0);
    check(
        "hostile: PSCI CPU_ON of MPIDR 1 (not my vCPU) is INVALID_PARAMETERS",
        r == INVALID_PARAMETERS,
        format_args!("returned {r:#x}"),
    );
    let r = hvc_call(CPU_ON_64, 0x100, entry, 0);
    check(
        "hostile: PSCI CPU_ON of MPIDR 0x100 is INVALID_PARAMETERS",
        r == INVALID_PARAMETERS,
        format_args!("returned {r:#x}"),
    );
    let r = hvc_call(AFFINITY_INFO_64, 1, 0, 0);
    check(
        "hostile: PSCI AFFINITY_INFO of MPIDR 1 is INVALID_PARAMETERS",
        r == INVALID_PARAMETERS,
        format_args!("returned {r:#x}"),
    );
    let r = hvc_call(CPU_ON_64, 0, entry, 0);
    check(
        "hostile: PSCI CPU_ON of myself is ALREADY_ON",
        r == ALREADY_ON,
        format_args!("returned {r:#x}"),
    );
}

/// What a guest could do to the terminal through its console if its bytes went
/// there raw. Each line that could pass for something it is not carries the word
/// `FORGED`; `tests/isolation.rs` checks that none of these sequences reaches the
/// terminal as such (no ESC, no C1 control, no `\r` that returns to column 0, no
/// `FORGED` at the start of a line) and that the text still shows.
const CONSOLE_ATTACKS: &[&[u8]] = &[
    // Lines that pass for the victim's and the hypervisor's, after a carriage
    // return that would put them at column 0 over this VM's tag.
    b"\r(victim) FORGED: a victim line after a carriage return\r\n",
    b"\r[INFO  cpu0] FORGED: a hypervisor line after a carriage return\r\n",
    // Backspaces over the tag.
    b"\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08(victim) FORGED: after backspaces\r\n",
    // Cursor up and erase the line, twice; home and clear the screen.
    b"\x1b[1A\x1b[2K\x1b[1A\x1b[2K\x1b[GFORGED: the lines above are erased\r\n",
    b"\x1b[H\x1b[2J(victim) FORGED: on a cleared screen\r\n",
    // Hide everything that follows (SGR 8, conceal) and paint it black on black.
    b"\x1b[8m\x1b[30;40mFORGED: hidden from here on\r\n",
    // Terminal queries, whose answers a terminal types as keyboard input: cursor
    // position (DSR 6), device attributes (DA), the background colour (OSC 11),
    // a setting (DECRQSS, a DCS string), the window title (XTWINOPS 21).
    b"\x1b[6n\x1b[c\x1b]11;?\x07\x1bP$qm\x1b\\\x1b[21t\r\n",
    // The same in 8-bit C1 controls: as single bytes (CSI, OSC, ST), in UTF-8
    // (U+009B, U+009D), and ESC as an overlong two-byte sequence.
    b"\x9b6n\x9d11;?\x9c\xc2\x9b6n\xc2\x9d11;?\x07\xc0\x9b6n\r\n",
    // A right-to-left override that would reorder the rest of the line.
    "FORGED: \u{202e})mitciv(\r\n".as_bytes(),
];

fn console_attacks() {
    println!("hostile: console attacks follow");
    for attack in CONSOLE_ATTACKS {
        for &b in *attack {
            guest_rt::console::putb(b);
        }
    }
    println!("hostile: console attacks done");
}

/// The deliberate crash: VBAR_EL1 at an IPA with nothing behind it (Normal and
/// executable in the runtime's stage-1 map, unmapped at stage 2), then UDF. Taking
/// the UNDEF fetches the vector, which aborts at stage 2; the injected instruction
/// abort fetches the same vector again: an exception loop forever.
fn crash() -> ! {
    let vbar = 0x8000_0000u64;
    println!("hostile: crashing now: VBAR_EL1 = {vbar:#x} (nothing there), then UDF");
    // SAFETY: deliberately unrecoverable; nothing after this runs.
    unsafe {
        asm!("msr vbar_el1, {v}", "isb", "udf #0", v = in(reg) vbar, options(noreturn, nostack))
    }
}

/// A check name built at run time (no allocator in the guests).
struct Line {
    buf: [u8; 160],
    len: usize,
}

impl Line {
    fn new() -> Self {
        Line {
            buf: [0; 160],
            len: 0,
        }
    }
    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
    }
}

impl fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}
