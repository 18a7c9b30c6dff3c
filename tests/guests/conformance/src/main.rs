//! Conformance guest, first version: what the hypervisor must do on the exception
//! paths and the SMCCC/PSCI interface of issue 2.
//!
//! Each `check!` is one line of output; `tests/qemu.rs` expects exactly
//! `CONFORMANCE_CHECKS` passes (keep that constant in step with this file).
//!
//! Meant to run under Ferrovisor. On bare QEMU (`-M virt`, entered at EL1) most checks
//! pass too, but these do not, because QEMU itself is the platform there: the load
//! and store at 0x3000_0000 (QEMU's PCIe MMIO window answers them), SMC (UNDEFINED
//! without EL2/EL3) and, depending on QEMU, unknown SMCCC function IDs over HVC.
#![no_std]
#![no_main]
#![deny(clippy::undocumented_unsafe_blocks)]

use core::arch::asm;

use guest_rt::exception::{DFSC_SYNC_EXTERNAL_ABORT, EC_DATA_ABORT_SAME_EL, EC_UNKNOWN};
use guest_rt::smccc::{
    PSCI_FEATURES, PSCI_RET_NOT_SUPPORTED, PSCI_SYSTEM_OFF, PSCI_SYSTEM_RESET, PSCI_VERSION,
    SMCCC_NOT_SUPPORTED,
};
use guest_rt::{
    ExceptionInfo, boot, catch_exception, check, current_el, expect_exception, finish, hvc_call,
    println, smc_call,
};

guest_rt::entry!(main);

#[path = "../../victim/src/fdt.rs"]
#[allow(dead_code)]
mod fdt;
mod gic;

/// A guest-physical address outside guest RAM (from 0x4000_0000) and away from the
/// PL011 (0x0900_0000) that no device of the VM claims.
const UNCLAIMED_PA: u64 = 0x3000_0000;

/// PSCI 1.1, what Ferrovisor implements.
const EXPECTED_PSCI_VERSION: u64 = 0x0001_0001;

/// A PSCI function ID in the PSCI range that no PSCI version defines (DEN0022 5.1:
/// 0x8400_0000..=0x8400_0015 are allocated as of PSCI 1.3).
const UNDEFINED_PSCI_FID: u32 = 0x8400_001f;

/// Fast SMC64 calls to the OEM service range (owner 3, DEN0028 table 6-2) and the
/// same in the SMC32 convention: nothing in Ferrovisor implements them.
const UNKNOWN_SMCCC_FID_64: u32 = 0xc300_0042;
const UNKNOWN_SMCCC_FID_32: u32 = 0x8300_0042;

fn main(dtb: u64) -> ! {
    println!("Ferrovisor conformance guest");
    boot_protocol(dtb);
    undefined_system_registers();
    unclaimed_address_aborts();
    psci_and_smccc();
    ctr_el0_into_any_register();
    passthrough_device();
    if let Some(seconds) = power_button_seconds(dtb) {
        passthrough_interrupt(seconds);
    }
    lowered_id_field();
    physical_timer();
    finish()
}

/// The config lowers ID_AA64ISAR0_EL1.AES to 0 (QEMU's max and cortex-a57
/// both have AES = 2): the guest sees the lowered value.
fn lowered_id_field() {
    let isar0: u64;
    // SAFETY: reading an ID register has no side effects.
    unsafe { asm!("mrs {}, id_aa64isar0_el1", out(reg) isar0) };
    let aes = (isar0 >> 4) & 0xf;
    check!(
        "cpu model: ID_AA64ISAR0_EL1.AES lowered by the config reads 0",
        aes == 0,
        "ID_AA64ISAR0_EL1 = {isar0:#x}"
    );
}

/// QEMU virt's PL061 GPIO controller, which the config gives this VM: a device that
/// does no DMA (ARM PrimeCell GPIO PL061 TRM: registers only).
const PL061: usize = 0x0903_0000;
const GPIODIR: usize = 0x400;
const GPIOIS: usize = 0x404;
const GPIOIBE: usize = 0x408;
const GPIOIEV: usize = 0x40c;
const GPIOIE: usize = 0x410;
const GPIOMIS: usize = 0x418;
const GPIOIC: usize = 0x41c;
const GPIO_PERIPH_ID0: usize = 0xfe0;
const GPIO_PCELL_ID0: usize = 0xff0;
/// QEMU virt wires its power button (`system_powerdown`, the `gpio-keys` node) to
/// GPIO line 3, and the PL061's interrupt to SPI 7.
const POWER_BUTTON_LINE: u32 = 3;
const PL061_INTID: u32 = 32 + 7;

fn pl061_read(offset: usize) -> Result<u64, ExceptionInfo> {
    catch_exception(|| {
        // SAFETY: a 32-bit read of a PL061 register in the passed-through page, which
        // the runtime's boot map covers as Device memory; a fault is caught.
        unsafe { ((PL061 + offset) as *const u32).read_volatile() as u64 }
    })
}

fn pl061_write(offset: usize, value: u32) {
    // SAFETY: a 32-bit write to a PL061 register in the passed-through page (Device
    // memory); it configures the GPIO block this VM owns.
    unsafe { ((PL061 + offset) as *mut u32).write_volatile(value) }
}

/// The config gives this VM QEMU virt's PL061: it reads the device itself (the
/// PrimeCell identification registers: peripheral ID 0x61, 0x10; cell ID 0x0d, 0xf0,
/// 0x05, 0xb1), not an abort.
fn passthrough_device() {
    let ids: [Result<u64, ExceptionInfo>; 6] = [
        pl061_read(GPIO_PERIPH_ID0),
        pl061_read(GPIO_PERIPH_ID0 + 4),
        pl061_read(GPIO_PCELL_ID0),
        pl061_read(GPIO_PCELL_ID0 + 4),
        pl061_read(GPIO_PCELL_ID0 + 8),
        pl061_read(GPIO_PCELL_ID0 + 12),
    ];
    let expected = [0x61, 0x10, 0x0d, 0xf0, 0x05, 0xb1];
    check!(
        "passthrough: the PL061 GPIO given to this VM reads its PrimeCell IDs",
        ids.iter().zip(expected).all(|(got, want)| *got == Ok(want)),
        "read {ids:x?}"
    );
}

/// Waits (up to a second) until GPIO line `bit` reads low: GPIODATA is read through
/// the address mask, address bits [9:2] selecting the lines (PL061 TRM, GPIODATA).
fn wait_for_release(bit: u32) {
    let (start, freq) = gic::counter();
    while pl061_read((bit as usize) << 2) != Ok(0) && gic::counter().0.wrapping_sub(start) < freq {
        core::hint::spin_loop();
    }
}

/// How long the guest waits for each press of the power button, from bootargs
/// `power_button=SECONDS`; without it (bare QEMU, a config that does not ask) the
/// interrupt checks are not run.
fn power_button_seconds(dtb: u64) -> Option<u64> {
    // SAFETY: x0 from the boot protocol: the device tree in identity-mapped RAM.
    let tree = unsafe { fdt::Fdt::at(dtb) }?;
    fdt::bootarg(tree.bootargs()?, "power_button")?.parse().ok()
}

/// A passthrough device's interrupt reaches the guest: QEMU's `system_powerdown` (sent
/// by the test harness on its monitor) raises PL061 line 3, whose edge interrupt is
/// SPI 7, forwarded hardware-linked to this VM. Twice: the second press is delivered
/// only if the guest's EOI of the first deactivated the physical interrupt too.
fn passthrough_interrupt(seconds: u64) {
    gic::init_for_spi(PL061_INTID);
    let bit = 1 << POWER_BUTTON_LINE;
    // Line 3 an input interrupting on its rising edge (PL061 TRM: GPIOIS 0 = edge,
    // GPIOIBE 0 = one edge, GPIOIEV 1 = rising), earlier edges cleared.
    pl061_write(GPIODIR, 0);
    pl061_write(GPIOIS, 0);
    pl061_write(GPIOIBE, 0);
    pl061_write(GPIOIEV, bit);
    pl061_write(GPIOIC, 0xff);
    pl061_write(GPIOIE, bit);
    for press in 1..=2 {
        // QEMU's gpio-keys device releases the button 100 ms (virtual time) after a
        // press; a press before that makes no new edge.
        wait_for_release(bit);
        println!(
            "conformance: press the power button ({press} of 2) within {seconds} s: \
             QEMU monitor command `system_powerdown` (under `make run`: Ctrl-] c)"
        );
        let intid = gic::wait_for_irq(seconds);
        let mis = pl061_read(GPIOMIS);
        // Clear the edge at the device, then EOI (drop priority and deactivate).
        pl061_write(GPIOIC, bit);
        if let Some(intid) = intid {
            gic::eoi(intid);
        }
        let name = if press == 1 {
            "passthrough: the power button's GPIO interrupt arrives as INTID 39 (PL061 line 3, SPI 7)"
        } else {
            "passthrough: a second press arrives too (the first EOI deactivated the physical interrupt)"
        };
        check!(
            name,
            intid == Some(PL061_INTID) && mis == Ok(u64::from(bit)),
            "acknowledged {intid:?}, GPIOMIS {mis:x?}"
        );
    }
    pl061_write(GPIOIE, 0);
}

/// CTR_EL0 read into different registers gives one value and leaves the other
/// registers alone. Under HCR_EL2.TID2 (CPUs without FEAT_EVT) every read traps
/// and the hypervisor answers it before its full exit: x0-x2 and the other
/// registers take different routes there, so each kind is read here.
fn ctr_el0_into_any_register() {
    let (a, b, c, d, e): (u64, u64, u64, u64, u64);
    let (keep0, keep1): (u64, u64);
    // SAFETY: MRS of CTR_EL0 has no side effects; every register written is
    // declared as an output.
    unsafe {
        core::arch::asm!(
            "mov x9, #0x5a5a",
            "mov x10, #0xa5a5",
            "mrs x0, ctr_el0",
            "mrs x1, ctr_el0",
            "mrs x2, ctr_el0",
            "mrs x17, ctr_el0",
            "mrs x30, ctr_el0",
            "mrs xzr, ctr_el0",
            out("x0") a, out("x1") b, out("x2") c, out("x17") d, out("x30") e,
            out("x9") keep0, out("x10") keep1,
        )
    };
    check!(
        "sysreg: CTR_EL0 reads into x0, x1, x2, x17, x30 and xzr agree",
        a == b && b == c && c == d && d == e && a != 0,
        "{a:#x} {b:#x} {c:#x} {d:#x} {e:#x}"
    );
    check!(
        "sysreg: a CTR_EL0 read leaves other registers alone",
        keep0 == 0x5a5a && keep1 == 0xa5a5,
        "x9 = {keep0:#x}, x10 = {keep1:#x}"
    );
}

/// Linux arm64 boot protocol as a guest sees it: EL1, x0 = the device tree.
fn boot_protocol(dtb: u64) {
    let el = current_el();
    check!("boot: entered at EL1", el == 1, "CurrentEL.EL = {el}");

    let magic = if boot::MAPPED_RAM.contains(&dtb) && dtb.is_multiple_of(4) {
        // SAFETY: dtb is 4-byte aligned and inside guest RAM, which the boot identity
        // map covers as Normal memory; reading it has no side effects.
        Some(u32::from_be(unsafe { (dtb as *const u32).read_volatile() }))
    } else {
        None
    };
    check!(
        "boot: x0 points at a flattened device tree in RAM",
        magic == Some(0xd00d_feed),
        "x0 = {dtb:#x}, first word {magic:x?}"
    );
}

/// Reads of an IMPLEMENTATION DEFINED register, an EL2 register from EL1: UNDEFINED
/// to the guest (EC 0, ELR = the instruction), and the guest carries on after it.
fn undefined_system_registers() {
    // S3_0_C15_C0_0 is in the IMPLEMENTATION DEFINED space (op0 = 3, CRn = 15;
    // Arm ARM D23.3.1). Ferrovisor traps that space (HCR_EL2.TIDCP) and must answer
    // UNDEF for a register its CPU model does not have.
    let (info, pc, resumed) = fault_at(|pc, resumed| {
        // SAFETY: the MRS either UNDEFs, which the armed vector records and skips, or
        // reads a register into a scratch output; neither touches memory.
        unsafe {
            asm!(
                "adr {pc}, 1f",
                "mov {resumed}, #0",
                "1: mrs {tmp}, s3_0_c15_c0_0",
                "mov {resumed}, #1",
                pc = out(reg) *pc, resumed = out(reg) *resumed, tmp = out(reg) _,
                options(nostack),
            )
        }
    });
    check_undef(
        "sysreg: MRS of IMPLEMENTATION DEFINED S3_0_C15_C0_0 is UNDEFINED",
        info,
        pc,
        resumed,
    );

    let (info, pc, resumed) = fault_at(|pc, resumed| {
        // SAFETY: as above, for an MSR of zero; the write UNDEFs rather than reaching
        // any register this program relies on.
        unsafe {
            asm!(
                "adr {pc}, 1f",
                "mov {resumed}, #0",
                "1: msr s3_0_c15_c0_0, xzr",
                "mov {resumed}, #1",
                pc = out(reg) * pc,
                resumed = out(reg) * resumed,
                options(nostack),
            )
        }
    });
    check_undef(
        "sysreg: MSR of IMPLEMENTATION DEFINED S3_0_C15_C0_0 is UNDEFINED",
        info,
        pc,
        resumed,
    );

    // HCR_EL2 from EL1: UNDEFINED when HCR_EL2.NV == 0 (Arm ARM D23.2.53), i.e. the
    // hypervisor does not expose nested virtualization.
    let (info, pc, resumed) = fault_at(|pc, resumed| {
        // SAFETY: as above: the MRS UNDEFs at EL1 and is skipped.
        unsafe {
            asm!(
                "adr {pc}, 1f",
                "mov {resumed}, #0",
                "1: mrs {tmp}, hcr_el2",
                "mov {resumed}, #1",
                pc = out(reg) *pc, resumed = out(reg) *resumed, tmp = out(reg) _,
                options(nostack),
            )
        }
    });
    check_undef(
        "sysreg: MRS of HCR_EL2 from EL1 is UNDEFINED",
        info,
        pc,
        resumed,
    );
}

/// Runs `body` under `expect_exception`; `body` sets the address of the expected
/// faulting instruction and a flag written by the instruction after it.
fn fault_at(body: impl FnOnce(&mut u64, &mut u64)) -> (Option<ExceptionInfo>, u64, u64) {
    let (mut pc, mut resumed) = (0, 0);
    let info = expect_exception(|| body(&mut pc, &mut resumed));
    (info, pc, resumed)
}

fn check_undef(name: &str, info: Option<ExceptionInfo>, pc: u64, resumed: u64) {
    let ok =
        matches!(info, Some(i) if i.ec() == EC_UNKNOWN && i.il() && i.elr == pc) && resumed == 1;
    check!(
        name,
        ok,
        "expected EC {EC_UNKNOWN:#x} at {pc:#x} and execution resumed: got {info:x?}, resumed={resumed}"
    );
}

/// Accesses to a guest-physical address no device claims: a synchronous External
/// abort injected into the guest (EC 0x25, DFSC 0x10), FAR = the address, and the
/// guest carries on.
fn unclaimed_address_aborts() {
    let (info, pc, resumed) = fault_at(|pc, resumed| {
        // SAFETY: UNCLAIMED_PA is mapped as Device memory by the boot map; the load
        // aborts (recorded and skipped) or reads a value nobody relies on.
        unsafe {
            asm!(
                "adr {pc}, 1f",
                "mov {resumed}, #0",
                "1: ldr {tmp:w}, [{addr}]",
                "mov {resumed}, #1",
                addr = in(reg) UNCLAIMED_PA,
                pc = out(reg) *pc, resumed = out(reg) *resumed, tmp = out(reg) _,
                options(nostack, readonly),
            )
        }
    });
    check_abort("abort: load from unclaimed PA", false, info, pc, resumed);

    let (info, pc, resumed) = fault_at(|pc, resumed| {
        // SAFETY: as above; a store to an address no device claims changes nothing.
        unsafe {
            asm!(
                "adr {pc}, 1f",
                "mov {resumed}, #0",
                "1: str wzr, [{addr}]",
                "mov {resumed}, #1",
                addr = in(reg) UNCLAIMED_PA,
                pc = out(reg) *pc, resumed = out(reg) *resumed,
                options(nostack),
            )
        }
    });
    check_abort("abort: store to unclaimed PA", true, info, pc, resumed);
}

fn check_abort(what: &str, write: bool, info: Option<ExceptionInfo>, pc: u64, resumed: u64) {
    let name_kind = if write {
        "abort: store to 0x3000_0000 is a synchronous external abort (EC 0x25, DFSC 0x10, WnR 1)"
    } else {
        "abort: load from 0x3000_0000 is a synchronous external abort (EC 0x25, DFSC 0x10, WnR 0)"
    };
    let syndrome_ok = matches!(info, Some(i)
        if i.ec() == EC_DATA_ABORT_SAME_EL
            && i.dfsc() == DFSC_SYNC_EXTERNAL_ABORT
            && i.il()
            && i.wnr() == write
            && i.elr == pc)
        && resumed == 1;
    check!(
        name_kind,
        syndrome_ok,
        "{what}: expected EC {EC_DATA_ABORT_SAME_EL:#x} DFSC {DFSC_SYNC_EXTERNAL_ABORT:#x} WnR {} at {pc:#x}, resumed: got {info:x?}, resumed={resumed}",
        u8::from(write)
    );
    // FAR_EL1 holds the faulting address unless ISS.FnV says it is not valid; the
    // hypervisor knows the address, so it must report it.
    let far_ok = matches!(info, Some(i) if !i.fnv() && i.far == UNCLAIMED_PA);
    check!(
        if write {
            "abort: store abort reports FAR_EL1 = 0x3000_0000"
        } else {
            "abort: load abort reports FAR_EL1 = 0x3000_0000"
        },
        far_ok,
        "{what}: got {info:x?}"
    );
}

/// PSCI and SMCCC over HVC (and PSCI_VERSION over SMC).
fn psci_and_smccc() {
    let hvc = |fid: u32, a1: u64| catch_exception(|| hvc_call(fid, a1, 0, 0));

    let v = hvc(PSCI_VERSION, 0);
    check!(
        "psci: PSCI_VERSION over HVC is 1.1 (0x10001)",
        v == Ok(EXPECTED_PSCI_VERSION),
        "got {v:x?}"
    );

    for (fid, name) in [
        (PSCI_VERSION, "psci: PSCI_FEATURES(PSCI_VERSION) = 0"),
        (PSCI_FEATURES, "psci: PSCI_FEATURES(PSCI_FEATURES) = 0"),
        (PSCI_SYSTEM_OFF, "psci: PSCI_FEATURES(SYSTEM_OFF) = 0"),
        (PSCI_SYSTEM_RESET, "psci: PSCI_FEATURES(SYSTEM_RESET) = 0"),
    ] {
        let r = hvc(PSCI_FEATURES, u64::from(fid));
        check!(name, matches!(r, Ok(x) if x as u32 == 0), "got {r:x?}");
    }

    let r = hvc(PSCI_FEATURES, u64::from(UNDEFINED_PSCI_FID));
    check!(
        "psci: PSCI_FEATURES(undefined PSCI function 0x8400001f) = NOT_SUPPORTED (-1)",
        matches!(r, Ok(x) if x as u32 == PSCI_RET_NOT_SUPPORTED),
        "got {r:x?}"
    );

    // SMCCC: an unknown function ID returns -1 sign-extended to 64 bits in x0 whatever
    // its calling convention (DEN0028 "Unknown Function Identifier").
    let r = hvc(UNKNOWN_SMCCC_FID_64, 0);
    check!(
        "smccc: unknown SMC64 function 0xc3000042 over HVC returns -1 in x0",
        r == Ok(SMCCC_NOT_SUPPORTED),
        "got {r:x?}"
    );
    let r = hvc(UNKNOWN_SMCCC_FID_32, 0);
    check!(
        "smccc: unknown SMC32 function 0x83000042 over HVC returns -1 in x0",
        r == Ok(SMCCC_NOT_SUPPORTED),
        "got {r:x?}"
    );

    // SMC from EL1 is trapped to EL2 (HCR_EL2.TSC) and answered like HVC.
    let r = catch_exception(|| smc_call(PSCI_VERSION, 0, 0, 0));
    check!(
        "psci: PSCI_VERSION over SMC #0 is 1.1 (0x10001)",
        r == Ok(EXPECTED_PSCI_VERSION),
        "got {r:x?}"
    );
}

/// The EL1 physical timer's interrupt (Non-secure EL1 physical timer, PPI 30:
/// Arm BSA, and the `arm,armv8-timer` binding's second interrupt).
const CNTP_INTID: u32 = 30;
/// CNTP_CTL_EL0 bits (Arm ARM D24.8, CNTP_CTL_EL0): ENABLE, IMASK, ISTATUS.
const CTL_ENABLE: u64 = 1 << 0;
const CTL_IMASK: u64 = 1 << 1;
const CTL_ISTATUS: u64 = 1 << 2;

fn cntpct() -> u64 {
    let v: u64;
    // SAFETY: reading the physical counter has no side effects; the ISB orders it
    // after earlier timer writes.
    unsafe { asm!("isb", "mrs {}, cntpct_el0", out(reg) v, options(nomem, nostack)) };
    v
}

fn cntp_ctl() -> u64 {
    let v: u64;
    // SAFETY: reading CNTP_CTL_EL0 has no side effects.
    unsafe { asm!("isb", "mrs {}, cntp_ctl_el0", out(reg) v, options(nomem, nostack)) };
    v
}

fn set_cntp_ctl(v: u64) {
    // SAFETY: programs this vCPU's EL1 physical timer, which only this check uses.
    unsafe { asm!("msr cntp_ctl_el0, {}", "isb", in(reg) v, options(nomem, nostack)) };
}

fn cntp_cval() -> u64 {
    let v: u64;
    // SAFETY: reading CNTP_CVAL_EL0 has no side effects.
    unsafe { asm!("mrs {}, cntp_cval_el0", out(reg) v, options(nomem, nostack)) };
    v
}

fn set_cntp_cval(v: u64) {
    // SAFETY: as `set_cntp_ctl`.
    unsafe { asm!("msr cntp_cval_el0, {}", "isb", in(reg) v, options(nomem, nostack)) };
}

fn cntp_tval() -> u64 {
    let v: u64;
    // SAFETY: reading CNTP_TVAL_EL0 has no side effects.
    unsafe { asm!("mrs {}, cntp_tval_el0", out(reg) v, options(nomem, nostack)) };
    v
}

fn set_cntp_tval(v: u64) {
    // SAFETY: as `set_cntp_ctl`.
    unsafe { asm!("msr cntp_tval_el0, {}", "isb", in(reg) v, options(nomem, nostack)) };
}

/// Issue 13, item 8: the EL1 physical timer (CNTP_CTL/CVAL/TVAL_EL0) behaves as
/// the architecture says (Arm ARM D12.2, "The AArch64 view of the timers"):
/// its registers read back, TVAL is the signed 32-bit CVAL - CNTPCT, ISTATUS
/// follows the timer condition, IMASK holds the interrupt back, and the
/// interrupt arrives as PPI 30 no earlier than CVAL and is withdrawn when the
/// timer is disabled.
fn physical_timer() {
    gic::init_for_ppi(CNTP_INTID);
    let freq = gic::counter().1;

    set_cntp_ctl(0);
    let cval = 0x0123_4567_89ab_cdef;
    set_cntp_cval(cval);
    let (ctl, back) = (cntp_ctl() & (CTL_ENABLE | CTL_IMASK), cntp_cval());
    set_cntp_ctl(CTL_IMASK);
    let masked = cntp_ctl() & (CTL_ENABLE | CTL_IMASK);
    check!(
        "CNTP: CNTP_CTL_EL0 and CNTP_CVAL_EL0 read back what was written",
        ctl == 0 && back == cval && masked == CTL_IMASK,
        "CTL {ctl:#x} then {masked:#x}, CVAL {back:#x}"
    );

    // A TVAL write sets CVAL = CNTPCT + SignExtend(TVAL); a TVAL read gives
    // (CVAL - CNTPCT)[31:0] (Arm ARM, CNTP_TVAL_EL0).
    let ahead = freq; // a second
    let before = cntpct();
    set_cntp_tval(ahead);
    let after = cntpct();
    let cval = cntp_cval();
    let tval = cntp_tval() as u32 as i32;
    let now = cntpct();
    let expected = cval.wrapping_sub(now) as i64;
    check!(
        "CNTP: a TVAL write sets CVAL = CNTPCT + TVAL; TVAL reads CVAL - CNTPCT",
        (before + ahead..=after + ahead).contains(&cval)
            && i64::from(tval) >= expected
            && i64::from(tval) <= ahead as i64,
        "CVAL {cval:#x} for counts {before:#x}..{after:#x} + {ahead:#x}, TVAL {tval} (then {expected})"
    );
    // A negative TVAL puts CVAL in the past.
    set_cntp_tval((-1000i64) as u64 & 0xffff_ffff);
    let past = cntp_cval();
    let tval = cntp_tval() as u32 as i32;
    let in_past = past < cntpct() && tval < -1000 + 1;

    // ISTATUS follows the timer condition, enabled and masked: clear with CVAL a
    // second ahead, set with it in the past; masked, no interrupt comes.
    set_cntp_cval(cntpct() + freq);
    set_cntp_ctl(CTL_ENABLE | CTL_IMASK);
    let ahead_ctl = cntp_ctl();
    set_cntp_cval(cntpct() - 1);
    let due_ctl = cntp_ctl();
    check!(
        "CNTP: ISTATUS clear before CVAL, set once CNTPCT >= CVAL (and TVAL negative after it)",
        ahead_ctl == CTL_ENABLE | CTL_IMASK
            && due_ctl == CTL_ENABLE | CTL_IMASK | CTL_ISTATUS
            && in_past,
        "CTL {ahead_ctl:#x} ahead, {due_ctl:#x} due; CVAL {past:#x} from TVAL -1000, TVAL then {tval}"
    );
    let while_masked = gic::irq_within(freq / 50);
    if let Some(intid) = while_masked {
        gic::eoi(intid);
    }
    check!(
        "CNTP: IMASK holds the timer's interrupt back",
        while_masked.is_none(),
        "INTID {while_masked:?} arrived with IMASK set"
    );

    // Unmasked and armed 20 ms ahead: INTID 30 arrives, not before CVAL.
    set_cntp_ctl(0);
    let due = cntpct() + freq / 50;
    set_cntp_cval(due);
    set_cntp_ctl(CTL_ENABLE);
    let fired = gic::irq_within(freq);
    let at = cntpct();
    let ctl = cntp_ctl();
    check!(
        "CNTP: the interrupt arrives as PPI 30 (INTID 30) once CVAL is reached, ISTATUS set",
        fired == Some(CNTP_INTID) && at >= due && ctl == CTL_ENABLE | CTL_ISTATUS,
        "INTID {fired:?} at count {at:#x} for CVAL {due:#x}, CTL {ctl:#x}"
    );
    // Disabled before the EOI: the line drops, nothing comes again.
    set_cntp_ctl(0);
    if let Some(intid) = fired {
        gic::eoi(intid);
    }
    let again = gic::irq_within(freq / 50);
    if let Some(intid) = again {
        gic::eoi(intid);
    }
    check!(
        "CNTP: disabling the timer withdraws its interrupt",
        again.is_none(),
        "INTID {again:?} arrived again after CNTP_CTL_EL0.ENABLE = 0"
    );
}
