//! Entry: the arm64 `Image` header, the EL check, the boot stack, the early
//! identity map, the image's self-relocation and the jump into Rust.
//!
//! Boot protocol (Linux `Documentation/arch/arm64/booting.rst`, which QEMU's
//! `-kernel` and U-Boot's `booti` both follow): MMU off, caches off or cleaned to
//! PoC for the image, x0 = physical address of the device tree, x1..x3 = 0.
//!
//! The image runs at whatever 2 MiB-aligned base (plus `text_offset`) the loader
//! chose. It is linked at 0 as a position-independent executable: every instruction
//! addresses code and data PC-relatively, and the data words that hold addresses are
//! listed in `.rela.dyn`, which `fv_relocate` applies (base + addend, the rule stated
//! and host-tested in `crate::relocate`) before any Rust runs. On the EL2 path that
//! happens with the early map on (caches on), so no line cached before the MMU was
//! switched on can hide a relocated value afterwards — the same reason BSS is
//! cleared only then.

use core::arch::global_asm;

use crate::mm::stack::{PAINT, StackArray};

/// Per-CPU EL2 stack size, chosen from the high-water marks the hypervisor logs
/// when the machine powers off (also in `make bench`'s footprint). Measured on
/// QEMU virt, `-cpu max`: the boot CPU, which parses the device tree and the
/// config and builds the VMs, peaks at 18.6 KiB in a release build (the demo and
/// the two-vCPU Linux config), a CPU running a Linux vCPU at 2.4 KiB. An
/// unoptimized build needs 4x that: 81 KiB on the boot CPU (its frames keep every
/// temporary; the derived config deserializers alone take up to 19 KiB each), so
/// debug builds get twice the release size. The guard page below each stack
/// turns a wrong guess into a report ("stack overflow on cpuN"), never into
/// corrupted memory.
#[cfg(not(debug_assertions))]
pub const STACK_SIZE: usize = 64 * 1024;
/// See the release build's `STACK_SIZE`.
#[cfg(debug_assertions)]
pub const STACK_SIZE: usize = 128 * 1024;
/// The unmapped guard below every stack (one 4 KiB page: rustc probes each page
/// of a larger frame, see `mm::stack`).
pub const GUARD_SIZE: usize = 4096;
/// Per-CPU emergency stack: what the EL2 fault vector reports from. Reporting
/// a stack overflow or a panic takes 1.7 KiB of it in a debug build (measured
/// from its paint); 8 KiB leaves room for a longer panic message.
pub const EMERGENCY_STACK_SIZE: usize = 8 * 1024;
/// How many physical CPUs this build can drive.
pub const MAX_CPUS: usize = 8;

// Stacks are whole pages, so each guard page is page-aligned and can be unmapped.
const _: () = assert!(
    STACK_SIZE.is_multiple_of(GUARD_SIZE) && EMERGENCY_STACK_SIZE.is_multiple_of(GUARD_SIZE)
);

/// `text_offset` of the Image header: the image sits 2 MiB above a 2 MiB-aligned
/// base. With the "anywhere" flag (bit 3) `booti` leaves the image where it was
/// loaded when that address is such a base plus 2 MiB, and QEMU's `-kernel` puts it
/// at DRAM base + 2 MiB, keeping the first 2 MiB for the device tree (U-Boot's
/// qemu_arm64 keeps it at the DRAM base too).
pub const TEXT_OFFSET: u64 = 0x20_0000;

/// Image header flags (`booting.rst`): bit 0 = 0 little endian, bits [2:1] = 1
/// 4 KiB pages, bit 3 = 1 "2 MiB-aligned base may be anywhere in physical memory"
/// (the image relocates itself at entry).
const IMAGE_FLAGS: u64 = (1 << 1) | (1 << 3);

// Stage-1 descriptor bits for the early map, Arm ARM D8.3 (block descriptor,
// VMSAv8-64, 4 KiB granule): [1:0] = 0b01 block, AttrIndx [4:2], SH [9:8], AF [10],
// XN [54]. MAIR_EL2 index 0 = Device-nGnRE (0x04), index 1 = Normal WB RA/WA (0xff).
const EARLY_BLOCK_DEVICE: u64 = 0x1 | (1 << 10) | (1 << 54);
const EARLY_BLOCK_NORMAL: u64 = 0x1 | (1 << 2) | (3 << 8) | (1 << 10);
const EARLY_MAIR: u64 = 0x04 | (0xff << 8) | (0x44 << 16);
// TCR_EL2 (E2H = 0 layout): T0SZ = 25 (39-bit VA, start at level 1), IRGN0 = ORGN0
// = WB RA/WA (0b01), SH0 = inner (0b11), TG0 = 4 KiB (0b00), PS from PARange
// (inserted at run time), RES1 bits 31 and 23.
const EARLY_TCR: u64 = 25 | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23) | (1 << 31);
// SCTLR_EL2 (E2H = 0): RES1 bits 4,5,11,16,18,22,23,28,29 plus M, C, SA, I.
const SCTLR_EL2_RES1: u64 = 0x30C5_0830;
const SCTLR_EL2_ON: u64 = SCTLR_EL2_RES1 | (1 << 0) | (1 << 2) | (1 << 3) | (1 << 12);
/// The device tree header's `magic` (Devicetree Specification, "Header"), as a
/// little-endian load of its big-endian bytes reads it.
const FDT_MAGIC_LE: u64 = 0xedfe_0dd0;
/// The largest device tree the early map covers (the parser's limit too).
const FDT_MAX_SIZE: u64 = 2 << 20;
/// The early map's tables: the level-1 table and four level-2 tables (the image
/// and the device tree each touch at most two GiBs).
const EARLY_TABLES_SIZE: u64 = 5 * 4096;

global_asm!(
    r#"
.section .text.boot, "ax"
.global _start
_start:
    // arm64 Image header (booting.rst "Call the kernel image").
    b       1f                      // code0
    .long   0                       // code1
    .quad   {text_offset}           // text_offset
    .quad   __fv_image_size         // image_size, from linker.ld
    .quad   {flags}                 // flags: little endian, 4 KiB pages, base anywhere
    .quad   0                       // res2
    .quad   0                       // res3
    .quad   0                       // res4
    .ascii  "ARM\x64"               // magic
    .long   0                       // res5
1:
    msr     daifset, #0xf
    mov     x19, x0                 // the device tree, kept for Rust
    adr     x20, _start             // where the image runs: the base of every relocation

    // Boot CPU stack: slot 0 of __fv_stacks, above its guard page.
    adrp    x1, __fv_stacks
    add     x1, x1, :lo12:__fv_stacks
    ldr     x2, ={stack_slot}
    add     x1, x1, x2
    mov     sp, x1

    mrs     x21, CurrentEL
    ubfx    x21, x21, #2, #2
    cmp     x21, #2
    b.eq    2f
    // Not at EL2: say so and stop. The report is Rust, which may read data that
    // holds addresses, so the image is relocated first (MMU off here and for the
    // rest of this path: every access goes to memory, no cache can hide a write).
    mov     x0, x20
    bl      fv_relocate
    mov     x0, x21
    mov     x1, x19
    bl      fv_wrong_exception_level
3:  wfe
    b       3b

2:
    // A known HCR_EL2 before anything else: E2H = 0 (the TCR_EL2/SCTLR_EL2
    // layouts below are the non-VHE ones), TGE = 0, RW = 1.
    mov     x1, #0x80000000
    msr     hcr_el2, x1
    // TPIDR_EL2 resets to an UNKNOWN value; 0 means "no per-CPU data yet" to
    // the EL2 fault vector until Rust sets it.
    msr     tpidr_el2, xzr
    isb
    bl      fv_early_mmu_on
    mov     x0, x20
    bl      fv_relocate

    // Clear BSS now that the caches are on (no stale lines can resurface).
    adrp    x0, __fv_bss_start
    add     x0, x0, :lo12:__fv_bss_start
    adrp    x1, __fv_bss_end
    add     x1, x1, :lo12:__fv_bss_end
4:  cmp     x0, x1
    b.hs    5f
    stp     xzr, xzr, [x0], #16
    b       4b
5:
    // Paint every stack (nothing is on them yet: the code above pushed
    // nothing), so the lowest word that lost its paint is a high-water mark.
    adrp    x0, __fv_stacks
    add     x0, x0, :lo12:__fv_stacks
    adrp    x1, __fv_stacks_end
    add     x1, x1, :lo12:__fv_stacks_end
    ldr     x2, ={paint}
10: cmp     x0, x1
    b.hs    11f
    stp     x2, x2, [x0], #16
    b       10b
11:
    adrp    x0, __fv_vectors
    add     x0, x0, :lo12:__fv_vectors
    msr     vbar_el2, x0
    isb
    mov     x0, x19
    mov     x29, xzr                // the end of the frame-record chain (debuggers' backtraces stop here)
    bl      fv_main
6:  wfe
    b       6b

// Secondary CPUs, started through the firmware's PSCI CPU_ON with
// x0 = context id = the CPU's logical index. The image is already relocated (by
// the boot CPU, with its caches on: this CPU reads through its own caches, which
// are coherent with the boot CPU's, once its MMU is on; before that it reads only
// __fv_el2_root, which the boot CPU cleans to the point of coherency).
.global fv_secondary_entry
fv_secondary_entry:
    msr     daifset, #0xf
    mov     x19, x0
    mov     x1, #0x80000000
    msr     hcr_el2, x1
    msr     tpidr_el2, xzr
    isb
    // Stack: slot x19 of __fv_stacks (painted by the boot CPU with its caches
    // on; this CPU first touches it with its own caches on, below).
    adrp    x1, __fv_stacks
    add     x1, x1, :lo12:__fv_stacks
    ldr     x2, ={stack_slot}
    add     x3, x19, #1
    madd    x1, x2, x3, x1
    mov     sp, x1
    // The final EL2 table, published (and cleaned to memory) by the boot CPU.
    adrp    x0, __fv_el2_root
    ldr     x0, [x0, :lo12:__fv_el2_root]
    bl      fv_mmu_enable
    adrp    x0, __fv_vectors
    add     x0, x0, :lo12:__fv_vectors
    msr     vbar_el2, x0
    isb
    mov     x0, x19
    mov     x29, xzr
    bl      fv_secondary_main
7:  wfe
    b       7b

// Applies the image's own relocations: for each Elf64_Rela record of .rela.dyn
// (r_offset, r_info, r_addend), the doubleword at x0 + r_offset becomes
// x0 + r_addend (R_AARCH64_RELATIVE with the image linked at 0; the rule is
// stated and host-tested in src/relocate.rs, and the boot checks every place
// against it). x0 = the address the image runs at. Clobbers x1-x6.
fv_relocate:
    adrp    x1, __fv_rela_start
    add     x1, x1, :lo12:__fv_rela_start
    adrp    x2, __fv_rela_end
    add     x2, x2, :lo12:__fv_rela_end
    mov     x6, #{r_relative}
12: cmp     x1, x2
    b.hs    14f
    ldp     x3, x4, [x1], #16
    ldr     x5, [x1], #8
    cmp     x4, x6
    b.ne    13f
    add     x5, x5, x0
    str     x5, [x0, x3]
    b       12b
    // Any other record type: the linker was asked for something this code does
    // not do. The build's host test (tests/relocation.rs) refuses such an image,
    // so this is never reached by a tested build; stop rather than run with a
    // wrong address in some table.
13: wfe
    b       13b
14: ret

// Early identity map: a level-1 table of 1 GiB Device-nGnRE blocks covering the
// 39-bit address space, except that the 2 MiB blocks holding this image and the
// device tree (x19) are Normal write-back: the GiBs they fall in are split into
// level-2 tables of 2 MiB blocks, so a device in the same GiB (a Raspberry Pi's
// peripherals share a GiB with RAM) stays Device memory. Rust then builds the real
// map from the device tree and switches to it. x20 = the image's base.
fv_early_mmu_on:
    mov     x7, x30
    adrp    x0, __fv_early_l1
    add     x0, x0, :lo12:__fv_early_l1
    ldr     x2, ={block_device}
    mov     x3, #0
8:  orr     x4, x2, x3, lsl #30
    str     x4, [x0, x3, lsl #3]
    add     x3, x3, #1
    cmp     x3, #512
    b.lo    8b
    ldr     x9, ={block_normal}
    add     x10, x0, #4096          // the level-2 tables follow the level-1 table
    add     x11, x0, #{early_tables_size}
    mov     x3, x20
    adrp    x4, __fv_image_end
    add     x4, x4, :lo12:__fv_image_end
    bl      17f
    // The device tree, as long as its header says (at most 2 MiB); only its
    // header when there is none to read. A pointer that is 0 or unaligned is
    // refused by Rust with a message; nothing is mapped or read for it here.
    cbz     x19, 16f
    tst     x19, #7
    b.ne    16f
    mov     x3, x19
    add     x4, x19, #64
    ldr     w5, [x19]
    ldr     x6, ={fdt_magic}
    cmp     x5, x6
    b.ne    22f
    ldr     w5, [x19, #4]
    rev     w5, w5                  // totalsize, big-endian
    ldr     x6, ={fdt_max}
    cmp     x5, x6
    csel    x5, x5, x6, ls
    cmp     x5, #64
    b.ls    22f
    add     x4, x19, x5
22: bl      17f
16:
    // The tables were written with the MMU off: invalidate any stale cached copy
    // so the walker (which reads through the caches, IRGN0 = WB) sees memory.
9:  dc      ivac, x0
    add     x0, x0, #64
    cmp     x0, x11
    b.lo    9b
    dsb     sy
    adrp    x0, __fv_early_l1
    add     x0, x0, :lo12:__fv_early_l1
    mov     x30, x7
    b       fv_mmu_enable

// Makes [x3, x4) Normal in the early map, 2 MiB blocks at a time (x3 < x4).
// x0 = the level-1 table, x2 / x9 = Device / Normal block attributes, x10 = the
// next free level-2 table, x11 = the end of the tables. Clobbers x3, x5, x6,
// x12-x14; advances x10.
17: and     x3, x3, #0xffffffffffe00000
18: cmp     x3, x4
    b.hs    19f
    lsr     x5, x3, #30
    and     x5, x5, #511
    ldr     x6, [x0, x5, lsl #3]
    and     x12, x6, #3
    cmp     x12, #3
    b.eq    20f                     // this GiB is a level-2 table already
    // Split the GiB's block into a level-2 table of 2 MiB Device blocks. The
    // image and the device tree touch at most four GiBs, one table each.
    cmp     x10, x11
    b.hs    23f
    mov     x13, #0
21: lsl     x14, x5, #30
    orr     x14, x14, x13, lsl #21
    orr     x14, x14, x2
    str     x14, [x10, x13, lsl #3]
    add     x13, x13, #1
    cmp     x13, #512
    b.lo    21b
    orr     x6, x10, #3             // table descriptor
    str     x6, [x0, x5, lsl #3]
    add     x10, x10, #4096
20: and     x6, x6, #0xfffffffff000 // the level-2 table
    ubfx    x13, x3, #21, #9
    orr     x14, x3, x9
    str     x14, [x6, x13, lsl #3]
    add     x3, x3, #0x200000
    b       18b
19: ret
23: wfe                             // not reached (see above)
    b       23b

// Turn the EL2 MMU on with the table in x0 (also used by secondaries with the
// final table). Clobbers x0-x3.
.global fv_mmu_enable
fv_mmu_enable:
    ldr     x1, ={mair}
    msr     mair_el2, x1
    ldr     x1, ={tcr}
    mrs     x2, id_aa64mmfr0_el1
    and     x2, x2, #0x7              // PARange -> TCR_EL2.PS (capped at 48 bits)
    cmp     x2, #5
    mov     x3, #5
    csel    x2, x2, x3, ls
    orr     x1, x1, x2, lsl #16
    msr     tcr_el2, x1
    msr     ttbr0_el2, x0
    isb
    tlbi    alle2
    dsb     nsh
    isb
    ldr     x1, ={sctlr}
    msr     sctlr_el2, x1
    isb
    ret

.section .data.early_pagetable, "aw"
.balign 4096
.global __fv_early_l1
__fv_early_l1:
    .space {early_tables_size}
.global __fv_el2_root
__fv_el2_root:
    .quad 0

// The stacks: per CPU [guard page | stack], then per CPU [guard page |
// emergency stack]. The EL2 map leaves the guard pages unmapped (mm::stack).
.section .stacks, "aw", %nobits
.balign 4096
.global __fv_stacks
__fv_stacks:
    .space {stacks_total}
.global __fv_emergency_stacks
__fv_emergency_stacks:
    .space {emergency_total}
.global __fv_stacks_end
__fv_stacks_end:
"#,
    text_offset = const TEXT_OFFSET,
    flags = const IMAGE_FLAGS,
    stack_slot = const GUARD_SIZE + STACK_SIZE,
    stacks_total = const (GUARD_SIZE + STACK_SIZE) * MAX_CPUS,
    emergency_total = const (GUARD_SIZE + EMERGENCY_STACK_SIZE) * MAX_CPUS,
    paint = const PAINT,
    r_relative = const crate::relocate::R_AARCH64_RELATIVE,
    block_device = const EARLY_BLOCK_DEVICE,
    block_normal = const EARLY_BLOCK_NORMAL,
    fdt_magic = const FDT_MAGIC_LE,
    fdt_max = const FDT_MAX_SIZE,
    early_tables_size = const EARLY_TABLES_SIZE,
    mair = const EARLY_MAIR,
    tcr = const EARLY_TCR,
    sctlr = const SCTLR_EL2_ON,
);

/// The CPUs' EL2 stacks (logical CPU `i` runs on stack `i`).
pub fn stacks() -> StackArray {
    unsafe extern "C" {
        static __fv_stacks: u8;
    }
    StackArray {
        // Taking the address of an extern static is safe; nothing is read.
        base: core::ptr::addr_of!(__fv_stacks) as u64,
        size: STACK_SIZE as u64,
        guard: GUARD_SIZE as u64,
        count: MAX_CPUS,
    }
}

/// The emergency stacks the EL2 fault vector switches to (one per CPU).
pub fn emergency_stacks() -> StackArray {
    unsafe extern "C" {
        static __fv_emergency_stacks: u8;
    }
    StackArray {
        // Taking the address of an extern static is safe; nothing is read.
        base: core::ptr::addr_of!(__fv_emergency_stacks) as u64,
        size: EMERGENCY_STACK_SIZE as u64,
        guard: GUARD_SIZE as u64,
        count: MAX_CPUS,
    }
}

/// Test builds only (`--features stack-overflow-test`): recurses until this
/// CPU's stack runs into its guard page, to show the overflow is caught and
/// reported ("stack overflow on cpuN") rather than written over whatever lies
/// below the stack.
#[cfg(feature = "stack-overflow-test")]
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn fv_stack_overflow_test(depth: u64) -> u64 {
    // Half a KiB per level, kept alive across the call so no level is optimized
    // away or turned into a loop.
    let mut frame = [depth; 64];
    core::hint::black_box(&mut frame);
    if core::hint::black_box(depth != u64::MAX) {
        fv_stack_overflow_test(depth + 1).wrapping_add(frame[63])
    } else {
        frame[0]
    }
}

/// What the entry code must have done, checked by Rust once it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryError {
    /// A relocated place does not hold what `crate::relocate` says.
    Relocation(crate::relocate::RelocError),
    /// The early map does not make `addr` (a byte of the image or of the device
    /// tree) Normal write-back memory.
    EarlyMap { addr: u64, par: u64 },
}

impl core::fmt::Display for EntryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EntryError::Relocation(e) => write!(f, "{e}"),
            EntryError::EarlyMap { addr, par } => write!(
                f,
                "the early EL2 map does not make {addr:#x} Normal memory (PAR_EL1 {par:#x})"
            ),
        }
    }
}

/// Checks what the entry code did before any Rust ran: every place the image's
/// `.rela.dyn` lists holds what `crate::relocate` says (base + addend), and the
/// early map makes the image's and the device tree's first and last bytes Normal
/// write-back memory (stacks, BSS and the heap need it: exclusive accesses, the
/// spin locks', are not architecturally guaranteed on Device memory). Must run
/// before anything writes data that holds an address (e.g. the logger
/// registration), so it is the first thing the boot CPU does in Rust. Returns the
/// number of relocated places checked.
pub fn check_entry(dtb_pa: u64) -> Result<usize, EntryError> {
    unsafe extern "C" {
        static __fv_image_start: u8;
        static __fv_load_end: u8;
        static __fv_image_end: u8;
        static __fv_rela_start: u8;
        static __fv_rela_end: u8;
    }
    // Taking the address of an extern static is safe; nothing is read.
    let base = core::ptr::addr_of!(__fv_image_start) as u64;
    let load_end = core::ptr::addr_of!(__fv_load_end) as u64;
    let image_end = core::ptr::addr_of!(__fv_image_end) as u64;
    let rela = core::ptr::addr_of!(__fv_rela_start) as u64;
    let rela_end = core::ptr::addr_of!(__fv_rela_end) as u64;

    let mut normal = [base, image_end - 1, dtb_pa, dtb_pa];
    if dtb_pa != 0 && dtb_pa.is_multiple_of(8) && is_normal(dtb_pa) {
        // SAFETY: the device tree's first bytes are mapped Normal (just checked);
        // an aligned 8-byte read of its header's magic and totalsize.
        let header = unsafe { (dtb_pa as *const u64).read_volatile() }.to_le_bytes();
        let magic = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let size = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as u64;
        if magic == 0xd00d_feed && size != 0 {
            normal[3] = dtb_pa + size.min(FDT_MAX_SIZE) - 1;
        }
    } else {
        // No device tree to check (Rust refuses the pointer with a message).
        normal[2] = base;
        normal[3] = base;
    }
    for addr in normal {
        if !is_normal(addr) {
            return Err(EntryError::EarlyMap {
                addr,
                par: translate(addr),
            });
        }
    }

    // SAFETY: linker.ld places the relocation records between the two symbols in
    // the loaded image, which is identity-mapped Normal memory and never written
    // after the entry code read it.
    let table =
        unsafe { core::slice::from_raw_parts(rela as *const u8, (rela_end - rela) as usize) };
    crate::relocate::verify(table, (load_end - base) as usize, base, |offset| {
        // SAFETY: `verify` passes only 8-byte aligned offsets whose doubleword
        // lies inside the loaded image (it checks each record first); the image
        // is mapped Normal memory and this read races with no writer (one CPU runs).
        unsafe { ((base + offset) as *const u64).read_volatile() }
    })
    .map_err(EntryError::Relocation)
}

/// PAR_EL1 after translating `addr` for a write in the EL2 regime (AT S1E2W).
fn translate(addr: u64) -> u64 {
    let par: u64;
    // SAFETY: an address translation instruction: it reads the translation tables
    // and writes PAR_EL1 only (Arm ARM, AT S1E2W); the ISB makes the result visible
    // to the MRS. No memory is accessed at `addr`.
    unsafe {
        core::arch::asm!(
            "at s1e2w, {a}",
            "isb",
            "mrs {p}, par_el1",
            a = in(reg) addr,
            p = out(reg) par,
            options(nostack, preserves_flags)
        )
    };
    par
}

/// Whether `addr` translates, writable, to Normal Inner/Outer write-back memory:
/// PAR_EL1.F = 0 and PAR_EL1.ATTR (bits [63:56], a MAIR encoding) = 0xff, the early
/// map's Normal attribute.
fn is_normal(addr: u64) -> bool {
    let par = translate(addr);
    par & 1 == 0 && par >> 56 == 0xff
}
