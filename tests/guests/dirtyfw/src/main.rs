//! A boot stage that leaves EL2 as a careless firmware might, then enters the
//! hypervisor — to test that nothing it leaves reaches a guest.
//!
//! QEMU starts it at EL2 (`-kernel`, `virtualization=on`) with `x0` = the device
//! tree; the hypervisor is loaded beside it at RAM base + 2 MiB (its Image
//! header's text_offset; `-device loader,...,force-raw=on`), with the boot bundle
//! as the initrd. It sets, on the boot CPU only:
//!
//! - HCRX_EL2 (FEAT_HCX): every enable — EnAS0/EnALS/EnASR, SMPME, MSCEn
//!   (MOPS), TCR2En, SCTLR2En, GCSEn, EnFPM — and TALLINT clear;
//! - HFGRTR_EL2/HFGWTR_EL2 (FEAT_FGT): every `n` bit (50..63) set, so SME's
//!   TPIDR2_EL0/SMPRI_EL1, GCS, PIE/POE, THE, ACCDATA, AIE are not trapped;
//!   HFGITR_EL2 likewise (nBRB*, nGCS*); HDFGRTR/HDFGWTR_EL2 (nBRB*, nPMSNEVFR);
//! - MDCR_EL2: TDE (debug exceptions and registers of EL1 routed to EL2), HPME
//!   with HPMN = 1 (event counters 1.. reserved for EL2, counting);
//! - CNTHCTL_EL2: the event stream on, EL1 physical timer and counter open.
//!
//! then prints one line and branches to the hypervisor with x0 unchanged. The
//! other CPUs are started later by the hypervisor itself (PSCI) and keep QEMU's
//! reset values.
#![no_std]
#![no_main]

/// MDCR_EL2: TDE (8) | HPME (7) | HPMN = 1.
const MDCR_EL2: u64 = 1 << 8 | 1 << 7 | 1;
/// HCRX_EL2: EnAS0 (0), EnALS (1), EnASR (2), SMPME (5), MSCEn (11), TCR2En (14),
/// SCTLR2En (15), GCSEn (22), EnFPM (23).
const HCRX_EL2: u64 = 0b111 | 1 << 5 | 1 << 11 | 1 << 14 | 1 << 15 | 1 << 22 | 1 << 23;
/// HFGRTR_EL2/HFGWTR_EL2: the `n` bits 50..=63.
const HFGXTR_EL2: u64 = !((1 << 50) - 1);
/// HFGITR_EL2: nBRBINJ (55), nBRBIALL (56), nGCSPUSHM_EL1 (57), nGCSSTR_EL1
/// (58), nGCSEPP (59).
const HFGITR_EL2: u64 = 0b1_1111 << 55;
/// HDFGRTR_EL2/HDFGWTR_EL2: nBRBIDR (59), nBRBCTL (60), nBRBDATA (61),
/// nPMSNEVFR_EL1 (62).
const HDFGXTR_EL2: u64 = 0b1111 << 59;
/// CNTHCTL_EL2 (E2H = 0): EL1PCTEN (0), EL1PCEN (1), EVNTEN (2).
const CNTHCTL_EL2: u64 = 0b111;
/// The hypervisor's load address: QEMU virt's RAM base + its text_offset.
const HYPERVISOR: u64 = 0x4020_0000;
/// QEMU virt's PL011 data register.
const UARTDR: u64 = 0x0900_0000;

core::arch::global_asm!(
    r#"
    .pushsection .text.head, "ax"
    .global _start
_start:
    b       1f                          // code0
    .long   0                           // code1
    .quad   0x80000                     // text_offset
    .quad   __dirtyfw_size              // image_size
    .quad   0x2                         // flags: LE, 4 KiB pages
    .quad   0, 0, 0                     // res2..res4
    .byte   0x41, 0x52, 0x4d, 0x64      // magic "ARM\x64"
    .long   0                           // res5
1:
    msr     daifset, #0xf
    // FEAT_HCX: ID_AA64MMFR1_EL1.HCX, bits [43:40].
    mrs     x9, id_aa64mmfr1_el1
    ubfx    x9, x9, #40, #4
    cbz     x9, 2f
    ldr     x9, ={hcrx}
    msr     S3_4_C1_C2_2, x9            // HCRX_EL2
2:
    // FEAT_FGT: ID_AA64MMFR0_EL1.FGT, bits [59:56].
    mrs     x9, id_aa64mmfr0_el1
    ubfx    x9, x9, #56, #4
    cbz     x9, 3f
    ldr     x9, ={hfgxtr}
    msr     S3_4_C1_C1_4, x9            // HFGRTR_EL2
    msr     S3_4_C1_C1_5, x9            // HFGWTR_EL2
    ldr     x9, ={hfgitr}
    msr     S3_4_C1_C1_6, x9            // HFGITR_EL2
    ldr     x9, ={hdfgxtr}
    msr     S3_4_C3_C1_4, x9            // HDFGRTR_EL2
    msr     S3_4_C3_C1_5, x9            // HDFGWTR_EL2
3:
    ldr     x9, ={mdcr}
    msr     mdcr_el2, x9
    ldr     x9, ={cnthctl}
    msr     cnthctl_el2, x9
    isb

    // "dirtyfw: ...\n" on the PL011 (MMU off: a Device access).
    ldr     x10, ={uart}
    adr     x11, 5f
4:  ldrb    w12, [x11], #1
    cbz     w12, 6f
    strb    w12, [x10]
    b       4b
6:
    mov     x1, xzr
    mov     x2, xzr
    mov     x3, xzr
    ldr     x9, ={hyp}
    br      x9
5:  .asciz  "dirtyfw: EL2 trap registers left permissive; entering the hypervisor\n"
    .balign 4
    .popsection
"#,
    hcrx = const HCRX_EL2,
    hfgxtr = const HFGXTR_EL2,
    hfgitr = const HFGITR_EL2,
    hdfgxtr = const HDFGXTR_EL2,
    mdcr = const MDCR_EL2,
    cnthctl = const CNTHCTL_EL2,
    uart = const UARTDR,
    hyp = const HYPERVISOR,
);

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
