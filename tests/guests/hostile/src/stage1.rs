//! The hostile guest's own stage-1 translation, so it can name IPAs above the 4 GiB
//! the runtime's identity map covers, point its table walks at addresses that are
//! not RAM, and jump to unmapped IPAs and catch the instruction abort.
//!
//! Regime (Arm ARM D8.2, VMSAv8-64 with the 4 KiB granule): TTBR0_EL1 only,
//! T0SZ = 16 (48-bit VA, walks start at level 0), IPS = the guest's PARange (at
//! most 48 bits: 52-bit output needs FEAT_LPA2 descriptors). Level-0 entries point
//! at level-1 tables of 1 GiB blocks; the attribute indexes are the runtime's MAIR
//! (0: Device-nGnRE, 1: Normal write-back).

use core::arch::asm;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use guest_rt::ExceptionInfo;

const ATTR_DEVICE: u64 = 0;
const ATTR_NORMAL: u64 = 1;
const GIB: u64 = 1 << 30;
/// A table descriptor (Arm ARM D8.3.1: bits[1:0] = 0b11 at levels 0-2).
const TABLE: u64 = 0b11;
/// Output address bits [47:12] of a descriptor.
const OA_MASK: u64 = 0x0000_ffff_ffff_f000;

/// TCR_EL1 (Arm ARM D23.2.148): T0SZ = 16, IRGN0/ORGN0 = write-back, SH0 = inner
/// shareable, TG0 = 4 KiB, EPD1 = 1; IPS (bits [34:32]) added at run time.
const TCR_EL1: u64 = 16 | (0b01 << 8) | (0b01 << 10) | (0b11 << 12) | (1 << 23);

#[repr(C, align(4096))]
struct Table([u64; 512]);

const TABLES: usize = 8;
static mut POOL: [Table; TABLES] = [const { Table([0; 512]) }; TABLES];
/// Tables handed out; table 0 is the level-0 root.
static USED: AtomicUsize = AtomicUsize::new(1);

fn table(i: usize) -> *mut u64 {
    core::ptr::addr_of_mut!(POOL)
        .cast::<Table>()
        .wrapping_add(i)
        .cast::<u64>()
}

fn root() -> *mut u64 {
    table(0)
}

/// A level-1 block descriptor for the GiB at `pa` (Arm ARM D8.3.1): AF set, inner
/// shareable Normal or execute-never Device.
const fn block(pa: u64, attr: u64) -> u64 {
    let common = pa | (attr << 2) | (1 << 10) | 0b01;
    if attr == ATTR_DEVICE {
        common | (1 << 53) | (1 << 54)
    } else {
        common | (0b11 << 8)
    }
}

/// Identity-maps the GiB containing `va`.
fn map_gib(va: u64, attr: u64) {
    let l0 = root();
    let i0 = ((va >> 39) & 511) as usize;
    let i1 = ((va >> 30) & 511) as usize;
    // SAFETY: the tables are this guest's own BSS; i0 and i1 are below 512, and the
    // pool index is checked against its size.
    unsafe {
        let mut e = l0.add(i0).read_volatile();
        if e & TABLE != TABLE {
            let n = USED.fetch_add(1, Ordering::SeqCst);
            assert!(n < TABLES, "stage-1 table pool exhausted");
            e = table(n) as u64 | TABLE;
            l0.add(i0).write_volatile(e);
        }
        let l1 = (e & OA_MASK) as *mut u64;
        l1.add(i1).write_volatile(block(va & !(GIB - 1), attr));
    }
}

/// The guest's PA size in bits from ID_AA64MMFR0_EL1.PARange (Arm ARM D23.2.75),
/// at most 48, and the IPS encoding for it.
fn pa_range() -> (u32, u64) {
    let mmfr0: u64;
    // SAFETY: reading an ID register at EL1 has no side effects.
    unsafe { asm!("mrs {}, id_aa64mmfr0_el1", out(reg) mmfr0, options(nomem, nostack)) };
    let ps = (mmfr0 & 0xf).min(5);
    let bits = [32, 36, 40, 42, 44, 48][ps as usize];
    (bits, ps)
}

/// IPAs above 4 GiB for data accesses, below `2^pa_bits`.
pub fn high_data_targets(pa_bits: u32) -> impl Iterator<Item = (u64, &'static str)> {
    let top = 1u64 << pa_bits;
    [
        (0x1_0000_0000, "4 GiB"),
        (0x40_0000_0000, "virt's high redistributor window"),
        (0x40_1000_0000, "virt's high PCIe ECAM"),
        (0x7f_ffff_f000, "the last page below 2^39"),
        (0x80_0000_0000, "2^39, virt's high PCIe MMIO"),
        (top - 0x1000, "the last page of my PA range"),
    ]
    .into_iter()
    .enumerate()
    .filter(move |&(i, (a, _))| a < top && (i < 5 || top > 0x100_0000_0000))
    .map(|(_, t)| t)
}

/// An IPA near the top of the PA range, mapped Normal and executable.
pub fn high_code_target(pa_bits: u32) -> u64 {
    (1u64 << pa_bits) - 2 * GIB
}

/// Builds the tables and switches TTBR0_EL1/TCR_EL1 to them; returns the PA size.
/// The low 4 GiB keep the runtime's map, so the code runs on undisturbed.
pub fn install() -> u32 {
    let (pa_bits, ips) = pa_range();
    map_gib(0x0000_0000, ATTR_DEVICE);
    map_gib(0x4000_0000, ATTR_NORMAL);
    map_gib(0x8000_0000, ATTR_NORMAL);
    map_gib(0xc000_0000, ATTR_DEVICE);
    for (a, _) in high_data_targets(pa_bits) {
        map_gib(a, ATTR_DEVICE);
    }
    map_gib(0x1_4000_0000, ATTR_NORMAL);
    if pa_bits > 32 {
        map_gib(high_code_target(pa_bits), ATTR_NORMAL);
    }
    // SAFETY: TCR_EL1 and TTBR0_EL1 change together, with the stage-1 MMU off in
    // between: a CPU may apply each MSR on its own (QEMU does), and neither the old
    // table under the new TCR nor the new table under the old TCR is a valid map.
    // With M = 0 instruction fetches are identity-mapped, which the old and the new
    // maps both are for this code; nothing here touches data memory. The new tables
    // map the low 4 GiB as the runtime's do, so everything after runs on unchanged.
    unsafe {
        asm!(
            "dsb ish",
            "mrs {sctlr}, sctlr_el1",
            "bic {off}, {sctlr}, #1",
            "msr sctlr_el1, {off}",
            "isb",
            "msr tcr_el1, {tcr}",
            "msr ttbr0_el1, {root}",
            "isb",
            "tlbi vmalle1",
            "dsb nsh",
            "isb",
            "msr sctlr_el1, {sctlr}",
            "isb",
            sctlr = out(reg) _,
            off = out(reg) _,
            tcr = in(reg) TCR_EL1 | (ips << 32),
            root = in(reg) root() as u64,
            options(nostack),
        )
    };
    pa_bits
}

/// Level-0 entries used for the table-walk tests: VAs 0x100_0000_0000 and up.
const WALK_L0_FIRST: usize = 2;
static WALK_NEXT: AtomicUsize = AtomicUsize::new(WALK_L0_FIRST);

fn sync_tables() {
    // SAFETY: barriers and a TLB invalidation of this guest's own EL1&0 regime.
    unsafe {
        asm!(
            "dsb ish",
            "tlbi vmalle1",
            "dsb nsh",
            "isb",
            options(nostack)
        )
    };
}

/// Points a fresh level-0 entry at a "level-1 table" at IPA `table_ipa` and returns
/// a VA whose walk reads it.
pub fn map_table_at(table_ipa: u64) -> u64 {
    let i0 = WALK_NEXT.fetch_add(1, Ordering::SeqCst);
    // SAFETY: the root table is this guest's own; i0 is a level-0 index the other
    // mappings do not use (they are all below 2^40 = index 2).
    unsafe { root().add(i0).write_volatile((table_ipa & OA_MASK) | TABLE) };
    sync_tables();
    (i0 as u64) << 39
}

/// Removes the entries [`map_table_at`] made.
pub fn unmap_walk_tests() {
    for i0 in WALK_L0_FIRST..WALK_NEXT.load(Ordering::SeqCst) {
        // SAFETY: as in map_table_at.
        unsafe { root().add(i0).write_volatile(0) };
    }
    sync_tables();
}

/// Recorded by the jump vector: ESR_EL1, FAR_EL1, ELR_EL1, count.
#[unsafe(no_mangle)]
static HOSTILE_JUMP_STATE: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// Branches to `target` with a vector table whose synchronous current-EL entry
/// records the exception and returns to the instruction after the branch (through
/// the link register). Returns what was recorded, if anything.
pub fn jump(target: u64) -> Option<ExceptionInfo> {
    for s in &HOSTILE_JUMP_STATE {
        s.store(0, Ordering::SeqCst);
    }
    // SAFETY: the branch either faults, and the jump vector (which touches only x9,
    // x10 and the state above) returns to the instruction after BLR with ELR_EL1 =
    // x30, or the target executes. Nothing is mapped at any target at stage 2, so
    // no code of anyone's is there to run. The runtime's vectors are put back.
    unsafe {
        asm!(
            "mrs {old}, vbar_el1",
            "msr vbar_el1, {vectors}",
            "isb",
            "blr {target}",
            "msr vbar_el1, {old}",
            "isb",
            old = out(reg) _,
            vectors = in(reg) hostile_jump_vectors as *const () as u64,
            target = in(reg) target,
            out("x9") _, out("x10") _, out("x30") _,
        )
    };
    let [esr, far, elr, count] = &HOSTILE_JUMP_STATE;
    (count.load(Ordering::SeqCst) != 0).then(|| ExceptionInfo {
        esr: esr.load(Ordering::SeqCst),
        far: far.load(Ordering::SeqCst),
        elr: elr.load(Ordering::SeqCst),
    })
}

unsafe extern "C" {
    /// The vector table below (an address, not a function to call).
    fn hostile_jump_vectors();
}

// Vector table for `jump`: entry 4 (synchronous, current EL with SP_ELx) records and
// returns to x30; every other entry goes to the runtime's vector of the same index,
// which reports it as unexpected.
core::arch::global_asm!(
    r#"
    .pushsection .text.hostile_jump_vectors, "ax"
    .balign 0x800
    .global hostile_jump_vectors
hostile_jump_vectors:
    .irp i, 0, 1, 2, 3
    .balign 0x80
    b       __guest_rt_vectors + \i * 0x80
    .endr
    .balign 0x80
    adrp    x9, HOSTILE_JUMP_STATE
    add     x9, x9, :lo12:HOSTILE_JUMP_STATE
    mrs     x10, esr_el1
    str     x10, [x9]
    mrs     x10, far_el1
    str     x10, [x9, #8]
    mrs     x10, elr_el1
    str     x10, [x9, #16]
    ldr     x10, [x9, #24]
    add     x10, x10, #1
    str     x10, [x9, #24]
    msr     elr_el1, x30
    eret
    .irp i, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    .balign 0x80
    b       __guest_rt_vectors + \i * 0x80
    .endr
    .popsection
"#
);
