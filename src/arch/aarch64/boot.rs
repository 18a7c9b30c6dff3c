//! Entry: the arm64 `Image` header, the EL check, the boot stack, the early
//! identity map and the jump into Rust.
//!
//! Boot protocol (Linux `Documentation/arch/arm64/booting.rst`, which QEMU's
//! `-kernel` and U-Boot's `booti` both follow): MMU off, caches off or cleaned to
//! PoC for the image, x0 = physical address of the device tree, x1..x3 = 0.

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

/// `text_offset` of the Image header: the image sits 2 MiB into DRAM, leaving the
/// first 2 MiB to the boot loader's device tree (U-Boot's qemu_arm64 keeps it at
/// the DRAM base).
pub const TEXT_OFFSET: u64 = 0x20_0000;

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
    .quad   0x2                     // flags: little endian, 4 KiB pages, 2 MiB-aligned base
    .quad   0                       // res2
    .quad   0                       // res3
    .quad   0                       // res4
    .ascii  "ARM\x64"               // magic
    .long   0                       // res5
1:
    msr     daifset, #0xf
    mov     x19, x0                 // the device tree, kept for Rust

    // Boot CPU stack: slot 0 of __fv_stacks, above its guard page.
    adrp    x1, __fv_stacks
    add     x1, x1, :lo12:__fv_stacks
    ldr     x2, ={stack_slot}
    add     x1, x1, x2
    mov     sp, x1

    mrs     x1, CurrentEL
    ubfx    x1, x1, #2, #2
    cmp     x1, #2
    b.eq    2f
    // Not at EL2: say so and stop (MMU off, so the report only does byte writes).
    mov     x0, x1
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
// x0 = context id = the CPU's logical index.
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

// Early identity map: one level-1 table of 1 GiB blocks covering the 39-bit
// address space, Device-nGnRE everywhere except the GiB holding this image and
// the GiB holding the device tree (x19), which are Normal write-back. Rust then
// builds the real map from the device tree and switches to it.
fv_early_mmu_on:
    adrp    x0, __fv_early_l1
    add     x0, x0, :lo12:__fv_early_l1
    ldr     x2, ={block_device}
    mov     x3, #0
8:  orr     x4, x2, x3, lsl #30
    str     x4, [x0, x3, lsl #3]
    add     x3, x3, #1
    cmp     x3, #512
    b.lo    8b
    ldr     x2, ={block_normal}
    adr     x3, _start
    lsr     x3, x3, #30
    and     x3, x3, #511
    orr     x4, x2, x3, lsl #30
    str     x4, [x0, x3, lsl #3]
    lsr     x3, x19, #30
    and     x3, x3, #511
    orr     x4, x2, x3, lsl #30
    str     x4, [x0, x3, lsl #3]
    // The table was written with the MMU off: invalidate any stale cached copy
    // so the walker (which reads through the caches, IRGN0 = WB) sees memory.
    add     x1, x0, #4096
9:  dc      ivac, x0
    add     x0, x0, #64
    cmp     x0, x1
    b.lo    9b
    dsb     sy
    adrp    x0, __fv_early_l1
    add     x0, x0, :lo12:__fv_early_l1
    // fall through with x0 = table

// Turn the EL2 MMU on with the table in x0 (also used by secondaries with the
// final table). Clobbers x0-x2.
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
    .space 4096
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
    stack_slot = const GUARD_SIZE + STACK_SIZE,
    stacks_total = const (GUARD_SIZE + STACK_SIZE) * MAX_CPUS,
    emergency_total = const (GUARD_SIZE + EMERGENCY_STACK_SIZE) * MAX_CPUS,
    paint = const PAINT,
    block_device = const EARLY_BLOCK_DEVICE,
    block_normal = const EARLY_BLOCK_NORMAL,
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
