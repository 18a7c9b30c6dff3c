//! Entry: the arm64 `Image` header, the EL check, the boot stack, the early
//! identity map and the jump into Rust.
//!
//! Boot protocol (Linux `Documentation/arch/arm64/booting.rst`, which QEMU's
//! `-kernel` and U-Boot's `booti` both follow): MMU off, caches off or cleaned to
//! PoC for the image, x0 = physical address of the device tree, x1..x3 = 0.

use core::arch::global_asm;

/// Per-CPU stack size.
pub const STACK_SIZE: usize = 64 * 1024;
/// How many physical CPUs this build can drive.
pub const MAX_CPUS: usize = 8;

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

    // Boot CPU stack: the first slot of __fv_stacks.
    adrp    x1, __fv_stacks
    add     x1, x1, :lo12:__fv_stacks
    add     x1, x1, #{stack_size}
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
    adrp    x0, __fv_vectors
    add     x0, x0, :lo12:__fv_vectors
    msr     vbar_el2, x0
    isb
    mov     x0, x19
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
    isb
    adrp    x1, __fv_stacks
    add     x1, x1, :lo12:__fv_stacks
    mov     x2, #{stack_size}
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

.section .stacks, "aw", %nobits
.balign 4096
.global __fv_stacks
__fv_stacks:
    .space {stacks_total}
"#,
    text_offset = const TEXT_OFFSET,
    stack_size = const STACK_SIZE,
    stacks_total = const STACK_SIZE * MAX_CPUS,
    block_device = const EARLY_BLOCK_DEVICE,
    block_normal = const EARLY_BLOCK_NORMAL,
    mair = const EARLY_MAIR,
    tcr = const EARLY_TCR,
    sctlr = const SCTLR_EL2_ON,
);

/// The top of logical CPU `index`'s stack (the boot CPU is 0).
pub fn stack_top(index: usize) -> usize {
    unsafe extern "C" {
        static __fv_stacks: u8;
    }
    // Taking the address of an extern static is safe; nothing is read.
    let base = core::ptr::addr_of!(__fv_stacks) as usize;
    base + STACK_SIZE * (index + 1)
}
