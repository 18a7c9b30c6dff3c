//! `_start`: the arm64 Linux `Image` header and the code that gets a guest to `main`.
//!
//! Header layout (Linux `Documentation/arch/arm64/booting.rst`):
//!
//! | offset | field       | value                                               |
//! |--------|-------------|-----------------------------------------------------|
//! | 0x00   | code0       | `b` to the real entry                               |
//! | 0x04   | code1       | 0                                                   |
//! | 0x08   | text_offset | 0x80000: loaded at RAM base + 0x80000 = 0x4008_0000 |
//! | 0x10   | image_size  | `__guest_image_size` from the linker script (BSS and stacks included) |
//! | 0x18   | flags       | 0b010: little-endian, 4 KiB pages, 2 MiB-aligned base near the start of RAM |
//! | 0x20   | res2..res4  | 0                                                   |
//! | 0x38   | magic       | `ARM\x64`                                           |
//! | 0x3c   | res5        | 0 (no PE header)                                    |
//!
//! text_offset is 0x80000 rather than 0 because QEMU's `-kernel` loader moves an Image
//! whose text_offset is below its boot stub's size up by 2 MiB, and the guest is
//! position-dependent: with 0x80000 every loader puts it at 0x4008_0000.
//!
//! Entry state (as Linux's boot protocol): EL1h, MMU off, `x0` = device tree address.
//! Before any Rust code runs `_start`:
//! 1. enables FP/SIMD at EL1 (`CPACR_EL1.FPEN = 0b11`, Arm ARM D23.2.33): the
//!    hard-float target lets the compiler use the vector registers anywhere;
//! 2. installs the vector table (`VBAR_EL1`);
//! 3. turns on the stage-1 MMU with an identity map and caches ([`TRANSLATION_TABLE`]):
//!    with the MMU off every data access is Device memory, where unaligned and
//!    exclusive accesses are not dependable; the table is constant data, so nothing
//!    is written before the caches are on;
//! 4. sets the stack, clears BSS and calls `__guest_rt_main(dtb)` (see [`crate::entry!`]).

/// Attr0 = Device-nGnRE (0x04), Attr1 = Normal, inner/outer write-back
/// read/write-allocate (0xff). Arm ARM D23.2.97 (MAIR_EL1).
const MAIR_EL1: u64 = 0x04 | (0xff << 8);
const ATTR_DEVICE: u64 = 0;
const ATTR_NORMAL: u64 = 1;

/// TCR_EL1 (Arm ARM D23.2.148): T0SZ = 32 (a 4 GiB VA range, walks start at level 1
/// with a 4 KiB granule), IRGN0/ORGN0 = write-back, SH0 = inner shareable, TG0 = 4 KiB,
/// EPD1 = 1 (no TTBR1 walks), IPS = 0b000 (32-bit PAs).
const TCR_EL1: u64 = 32 | (0b01 << 8) | (0b01 << 10) | (0b11 << 12) | (1 << 23);

/// SCTLR_EL1 (Arm ARM D23.2.140): the RES1 bits of Armv8.0 (11, 20, 22, 23, 28, 29),
/// M (MMU), C (data cache), SA (SP alignment check), I (instruction cache).
/// EE = 0: little-endian.
const SCTLR_EL1: u64 = 0x30d0_0800 | (1 << 0) | (1 << 2) | (1 << 3) | (1 << 12);

/// CPACR_EL1.FPEN = 0b11: FP/SIMD not trapped at EL1 or EL0.
const CPACR_EL1: u64 = 0b11 << 20;

/// A level-1 block descriptor (Arm ARM D8.3): valid block, AttrIndx, AF.
const fn block(pa: u64, attr: u64) -> u64 {
    let af = 1 << 10;
    let common = pa | (attr << 2) | af | 0b01;
    if attr == ATTR_DEVICE {
        // Device memory is never executable (PXN bit 53, UXN bit 54).
        common | (1 << 53) | (1 << 54)
    } else {
        // SH = inner shareable.
        common | (0b11 << 8)
    }
}

#[repr(C, align(4096))]
struct TranslationTable([u64; 4]);

/// The guest's identity map, four 1 GiB blocks:
/// - `0x0000_0000..0x4000_0000`: Device (the PL011 at 0x0900_0000, the GIC, and the
///   unclaimed addresses the conformance tests touch);
/// - `0x4000_0000..0xc000_0000`: Normal write-back (guest RAM from its base);
/// - `0xc000_0000..0x1_0000_0000`: Device, so nothing speculates into it.
#[unsafe(no_mangle)]
static __guest_rt_translation_table: TranslationTable = TranslationTable([
    block(0x0000_0000, ATTR_DEVICE),
    block(0x4000_0000, ATTR_NORMAL),
    block(0x8000_0000, ATTR_NORMAL),
    block(0xc000_0000, ATTR_DEVICE),
]);

/// Where guest RAM may be and is mapped as Normal memory by the identity map.
pub const MAPPED_RAM: core::ops::Range<u64> = 0x4000_0000..0xc000_0000;

core::arch::global_asm!(
    r#"
    .pushsection .text.head, "ax"
    .global _start
_start:
    b       __guest_rt_entry            // code0
    .long   0                           // code1
    .quad   0x80000                     // text_offset
    .quad   __guest_image_size          // image_size
    .quad   0x2                         // flags: LE, 4 KiB pages
    .quad   0                           // res2
    .quad   0                           // res3
    .quad   0                           // res4
    .byte   0x41, 0x52, 0x4d, 0x64      // magic "ARM\x64"
    .long   0                           // res5
    .popsection

    .pushsection .text.__guest_rt_entry, "ax"
__guest_rt_entry:
    mov     x19, x0                     // the device tree's address, for main

    ldr     x1, ={cpacr}
    msr     cpacr_el1, x1

    adrp    x1, __guest_rt_vectors
    add     x1, x1, :lo12:__guest_rt_vectors
    msr     vbar_el1, x1

    ldr     x1, ={mair}
    msr     mair_el1, x1
    ldr     x1, ={tcr}
    msr     tcr_el1, x1
    adrp    x1, __guest_rt_translation_table
    add     x1, x1, :lo12:__guest_rt_translation_table
    msr     ttbr0_el1, x1
    isb
    tlbi    vmalle1
    ic      iallu
    dsb     nsh
    isb
    ldr     x1, ={sctlr}
    msr     sctlr_el1, x1
    isb

    adrp    x1, __guest_stack_top
    add     x1, x1, :lo12:__guest_stack_top
    mov     sp, x1

    adrp    x1, __guest_bss_start
    add     x1, x1, :lo12:__guest_bss_start
    adrp    x2, __guest_bss_end
    add     x2, x2, :lo12:__guest_bss_end
1:  cmp     x1, x2
    b.hs    2f
    stp     xzr, xzr, [x1], #16
    b       1b
2:
    mov     x0, x19
    bl      __guest_rt_main
3:  wfi
    b       3b
    .ltorg
    .popsection
"#,
    cpacr = const CPACR_EL1,
    mair = const MAIR_EL1,
    tcr = const TCR_EL1,
    sctlr = const SCTLR_EL1,
);
