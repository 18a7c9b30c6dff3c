//! Host tests with real ESR_EL2 values.
//!
//! Each value is written twice: once as the hex constant, and once composed from the
//! Arm ARM field layout (EC[31:26], IL[25], ISS[24:0]) by `esr()` below, so a typo in
//! either shows. Where a value was also seen elsewhere the comment says where:
//! - QEMU target/arm (syndrome.h and its callers) builds WFI traps as
//!   `syn_wfx(1, 0xe, 0, ...)` (CV=1, COND=0xe for AArch64: 0x07e00000), FP/SIMD traps
//!   as `syn_fp_access_trap(1, 0xe, false, 0)` (0x1fe00000), breakpoints from a lower
//!   EL as EC 0x30 | IL | 0x22 (0xc2000022), Illegal state as EC 0x0e | IL.
//! - Linux prints `ESR = 0x96000007 ... EC = 0x25: DABT (current EL) ... FSC = 0x07:
//!   level 3 translation fault, ISV = 0` (a kernel paging-request oops), `0x9600004f`
//!   for a write to a read-only kernel page (WnR=1, level-3 permission fault), and
//!   `BRK handler: f2000800` for BUG() (BRK #0x800).
//! - HVC #0 = 0x5a000000 and SMC #0 = 0x5e000000 are what every KVM/Xen trace of a PSCI
//!   call shows; they follow directly from EC 0x16/0x17 with IL=1 and imm16=0.

use super::*;

/// EC, IL and ISS packed as in ESR_EL2 (Arm ARM D24.2).
fn esr(ec: u64, il: bool, iss: u64) -> u64 {
    (ec << 26) | ((il as u64) << 25) | iss
}

/// ISS of an EC 0x18 trap: Op0[21:20] Op2[19:17] Op1[16:14] CRn[13:10] Rt[9:5]
/// CRm[4:1] Direction[0] (1 = read).
fn sysreg_iss(op0: u64, op1: u64, crn: u64, crm: u64, op2: u64, rt: u64, read: bool) -> u64 {
    (op0 << 20) | (op2 << 17) | (op1 << 14) | (crn << 10) | (rt << 5) | (crm << 1) | read as u64
}

#[test]
fn mrs_ccsidr_el1_into_x3() {
    // MRS X3, CCSIDR_EL1 (S3_1_C0_C0_0), trapped by HCR_EL2.TID2.
    let value = 0x6230_4061;
    assert_eq!(value, esr(0x18, true, sysreg_iss(3, 1, 0, 0, 0, 3, true)));
    assert_eq!(
        decode(value, 0, 0),
        Exit::SysReg(SysRegAccess {
            reg: SysReg::new(3, 1, 0, 0, 0),
            rt: 3,
            write: false,
        })
    );
    assert_eq!(instruction_length(value), 4);
}

#[test]
fn msr_sctlr_el1_from_x5() {
    // MSR SCTLR_EL1 (S3_0_C1_C0_0), X5, trapped by HCR_EL2.TVM.
    let value = 0x6230_04a0;
    assert_eq!(value, esr(0x18, true, sysreg_iss(3, 0, 1, 0, 0, 5, false)));
    let Exit::SysReg(access) = decode(value, 0, 0) else {
        panic!("not a sysreg exit: {:?}", decode(value, 0, 0));
    };
    assert_eq!(access.reg, SysReg::new(3, 0, 1, 0, 0));
    assert_eq!(format!("{}", access.reg), "S3_0_C1_C0_0");
    assert_eq!(access.rt, 5);
    assert!(access.write);
}

#[test]
fn sysreg_every_field_lands_in_its_place() {
    // DC CISW, X30 is S1_0_C7_C14_2, a System instruction (Direction = 0): all five
    // encoding fields differ, so a swapped field would show.
    let value = esr(0x18, true, sysreg_iss(1, 0, 7, 14, 2, 30, false));
    assert_eq!(
        decode(value, 0, 0),
        Exit::SysReg(SysRegAccess {
            reg: SysReg::new(1, 0, 7, 14, 2),
            rt: 30,
            write: true,
        })
    );
    // MRS XZR, S2_7_C15_C15_7: maximal values in every field.
    let value = esr(0x18, true, sysreg_iss(2, 7, 15, 15, 7, 31, true));
    assert_eq!(
        decode(value, 0, 0),
        Exit::SysReg(SysRegAccess {
            reg: SysReg::new(2, 7, 15, 15, 7),
            rt: 31,
            write: false,
        })
    );
}

#[test]
fn hvc_and_smc() {
    assert_eq!(0x5a00_0000, esr(0x16, true, 0));
    assert_eq!(decode(0x5a00_0000, 0, 0), Exit::Hvc { imm: 0 });
    assert_eq!(
        decode(esr(0x16, true, 0xbeef), 0, 0),
        Exit::Hvc { imm: 0xbeef }
    );
    assert_eq!(0x5e00_0000, esr(0x17, true, 0));
    assert_eq!(decode(0x5e00_0000, 0, 0), Exit::Smc { imm: 0 });
    assert_eq!(decode(esr(0x17, true, 1), 0, 0), Exit::Smc { imm: 1 });
    // A trapped SMC returns to the SMC itself; the handler steps over it.
    assert_eq!(instruction_length(0x5e00_0000), 4);
}

#[test]
fn str_w2_to_mmio_with_syndrome() {
    // STR W2, [X1] where X1 maps (stage 1) to IPA 0x0900_0030 (PL011 UARTCR on QEMU
    // virt), unmapped at stage 2: level-3 Translation fault, ISV=1, SAS=0b10 (word),
    // SRT=2, SF=0, WnR=1.
    let value = 0x9382_0047;
    let iss = (1 << 24) | (0b10 << 22) | (2 << 16) | (1 << 6) | 0x07;
    assert_eq!(value, esr(0x24, true, iss));
    let far = 0xffff_ffc0_0801_0030; // guest VA; only its page offset reaches the IPA
    let hpfar = (0x0900_0030u64 >> 12) << 4; // FIPA = IPA[..:12] at HPFAR[..:4]
    let Exit::DataAbort(abort) = decode(value, far, hpfar) else {
        panic!("not a data abort");
    };
    assert_eq!(abort.ipa, 0x0900_0030);
    assert!(abort.ipa_valid);
    assert_eq!(abort.far, far);
    assert!(abort.isv);
    assert_eq!(abort.sas, 4);
    assert!(!abort.sse);
    assert_eq!(abort.srt, 2);
    assert!(!abort.sf);
    assert!(!abort.ar);
    assert!(abort.wnr);
    assert!(!abort.s1ptw);
    assert!(!abort.cm);
    assert!(!abort.ea);
    assert!(!abort.fnv);
    assert_eq!(abort.dfsc, FaultStatus::Translation { level: 3 });
}

#[test]
fn ldrsh_x7_acquire_fields() {
    // A sign-extending halfword load into X7 (SAS=0b01, SSE=1, SRT=7, SF=1) with
    // acquire semantics (AR=1), level-2 Translation fault.
    let iss = (1 << 24) | (0b01 << 22) | (1 << 21) | (7 << 16) | (1 << 15) | (1 << 14) | 0x06;
    let Exit::DataAbort(abort) = decode(esr(0x24, true, iss), 0x1000, 0) else {
        panic!("not a data abort");
    };
    assert_eq!(abort.sas, 2);
    assert!(abort.sse && abort.sf && abort.ar);
    assert_eq!(abort.srt, 7);
    assert!(!abort.wnr);
    assert_eq!(abort.dfsc, FaultStatus::Translation { level: 2 });
    // Byte and doubleword sizes.
    let byte = decode(esr(0x24, true, (1 << 24) | 0x07), 0, 0);
    let dword = decode(esr(0x24, true, (1 << 24) | (0b11 << 22) | 0x07), 0, 0);
    assert!(matches!(byte, Exit::DataAbort(DataAbort { sas: 1, .. })));
    assert!(matches!(dword, Exit::DataAbort(DataAbort { sas: 8, .. })));
}

#[test]
fn stage2_translation_fault_level3_without_syndrome() {
    // e.g. LDP X0, X1, [X2] into an unmapped IPA: no instruction syndrome (ISV=0).
    // Linux prints the same ISS for its own level-3 translation fault, taken at the
    // current EL: ESR 0x96000007 (EC 0x25). EC 0x24 differs from 0x25 only in EC[0]
    // (ESR bit 26).
    let linux_current_el = 0x9600_0007u64;
    let value = 0x9200_0007;
    assert_eq!(value, linux_current_el & !(1 << 26));
    assert_eq!(value, esr(0x24, true, 0x07));
    let hpfar = (0x4800_1000u64 >> 12) << 4;
    let Exit::DataAbort(abort) = decode(value, 0x4800_1008, hpfar) else {
        panic!("not a data abort");
    };
    assert!(!abort.isv);
    assert!(!abort.wnr);
    assert_eq!(abort.ipa, 0x4800_1008);
    assert!(abort.ipa_valid);
    assert_eq!(abort.dfsc, FaultStatus::Translation { level: 3 });
    // The current-EL original is EL2's own fault, not a guest exit.
    assert_eq!(
        decode(linux_current_el, 0, 0),
        Exit::Unknown {
            ec: 0x25,
            iss: 0x07,
            il: true
        }
    );
}

#[test]
fn permission_fault_ipa_is_not_trusted() {
    // Linux's ESR 0x9600004f (write, level-3 permission fault) taken from a lower EL.
    let value = 0x9600_004f & !(1 << 26);
    assert_eq!(value, 0x9200_004f);
    let Exit::DataAbort(abort) = decode(value, 0x1234, 0x40) else {
        panic!("not a data abort");
    };
    assert!(abort.wnr);
    assert_eq!(abort.dfsc, FaultStatus::Permission { level: 3 });
    // HPFAR_EL2 is UNKNOWN for a stage-2 permission fault outside a stage-1 walk.
    assert!(!abort.ipa_valid);
    // ... but written for any stage-2 fault on the guest's stage-1 walk (S1PTW=1).
    let on_walk = decode(value | (1 << 7), 0x1234, 0x40);
    assert!(matches!(
        on_walk,
        Exit::DataAbort(DataAbort {
            s1ptw: true,
            ipa_valid: true,
            ipa: 0x4234,
            ..
        })
    ));
}

#[test]
fn far_not_valid_makes_ipa_invalid_and_ns_bit_is_not_address() {
    // FnV=1, EA=1, CM=1 on a synchronous external abort.
    let iss = (1 << 10) | (1 << 9) | (1 << 8) | 0x10;
    let Exit::DataAbort(abort) = decode(esr(0x24, true, iss), 0, 0) else {
        panic!("not a data abort");
    };
    assert!(abort.fnv && abort.ea && abort.cm);
    assert!(!abort.ipa_valid);
    assert_eq!(abort.dfsc, FaultStatus::SyncExternal);
    // HPFAR_EL2.NS (bit 63) must not leak into the IPA.
    let hpfar = (1 << 63) | (0x8_0000 << 4);
    let Exit::DataAbort(abort) = decode(esr(0x24, true, 0x07), 0xabc, hpfar) else {
        panic!("not a data abort");
    };
    assert_eq!(abort.ipa, 0x8000_0abc);
}

#[test]
fn instruction_abort_from_guest() {
    // Guest fetches from an IPA with no stage-2 mapping: level-2 Translation fault.
    let value = 0x8200_0006;
    assert_eq!(value, esr(0x20, true, 0x06));
    let hpfar = (0x4020_0000u64 >> 12) << 4;
    assert_eq!(
        decode(value, 0xffff_8000_0020_0010, hpfar),
        Exit::InstAbort(InstAbort {
            ipa: 0x4020_0010,
            ipa_valid: true,
            far: 0xffff_8000_0020_0010,
            ifsc: FaultStatus::Translation { level: 2 },
            s1ptw: false,
            ea: false,
            fnv: false,
        })
    );
}

#[test]
fn wfi_wfe_wfit() {
    // QEMU: syn_wfx(1, 0xe, ti, false) for AArch64.
    assert_eq!(0x07e0_0000, esr(0x01, true, (1 << 24) | (0xe << 20)));
    assert_eq!(
        decode(0x07e0_0000, 0, 0),
        Exit::Wfx {
            kind: WfxKind::Wfi,
            rt: None
        }
    );
    assert_eq!(
        decode(0x07e0_0001, 0, 0),
        Exit::Wfx {
            kind: WfxKind::Wfe,
            rt: None
        }
    );
    // WFIT X4 (FEAT_WFxT): RV=1, RN=4, TI=0b10.
    let wfit = 0x07e0_0000 | (4 << 5) | (1 << 2) | 0b10;
    assert_eq!(
        decode(wfit, 0, 0),
        Exit::Wfx {
            kind: WfxKind::Wfit,
            rt: Some(4)
        }
    );
    let wfet = 0x07e0_0000 | (9 << 5) | (1 << 2) | 0b11;
    assert_eq!(
        decode(wfet, 0, 0),
        Exit::Wfx {
            kind: WfxKind::Wfet,
            rt: Some(9)
        }
    );
    // WFI returns to itself: the handler steps over 4 bytes.
    assert_eq!(instruction_length(0x07e0_0000), 4);
}

#[test]
fn fp_sve_sme_traps() {
    // QEMU: syn_fp_access_trap(1, 0xe, false, 0) = 0x1fe00000 (CPTR_EL2.TFP/FPEN).
    assert_eq!(0x1fe0_0000, esr(0x07, true, (1 << 24) | (0xe << 20)));
    assert_eq!(decode(0x1fe0_0000, 0, 0), Exit::FpAccess);
    assert_eq!(0x6600_0000, esr(0x19, true, 0));
    assert_eq!(decode(0x6600_0000, 0, 0), Exit::Sve);
    assert_eq!(decode(esr(0x1d, true, 0), 0, 0), Exit::Sme { smtc: 0 });
    assert_eq!(decode(esr(0x1d, true, 3), 0, 0), Exit::Sme { smtc: 3 });
}

#[test]
fn debug_classes() {
    // QEMU syn_breakpoint(same_el = 0).
    assert_eq!(0xc200_0022, esr(0x30, true, 0x22));
    assert_eq!(
        decode(0xc200_0022, 0, 0),
        Exit::Debug(DebugExit::Breakpoint)
    );
    // QEMU syn_swstep(0, isv, ex).
    assert_eq!(
        decode(esr(0x32, true, 0x22), 0, 0),
        Exit::Debug(DebugExit::SoftwareStep {
            isv: false,
            ex: false
        })
    );
    assert_eq!(
        decode(esr(0x32, true, (1 << 24) | (1 << 6) | 0x22), 0, 0),
        Exit::Debug(DebugExit::SoftwareStep {
            isv: true,
            ex: true
        })
    );
    // QEMU syn_watchpoint(0, cm = 0, wnr = 1).
    assert_eq!(
        decode(esr(0x34, true, (1 << 6) | 0x22), 0xffff_0000_1234_5678, 0),
        Exit::Debug(DebugExit::Watchpoint {
            far: 0xffff_0000_1234_5678,
            wnr: true,
            cm: false,
        })
    );
    // Linux BUG(): "BRK handler: f2000800".
    assert_eq!(0xf200_0800, esr(0x3c, true, 0x800));
    assert_eq!(
        decode(0xf200_0800, 0, 0),
        Exit::Debug(DebugExit::Brk { comment: 0x800 })
    );
}

#[test]
fn illegal_state() {
    assert_eq!(decode(esr(0x0e, true, 0), 0, 0), Exit::IllegalState);
}

#[test]
fn unnamed_classes_are_kept_raw() {
    // EC 0: unknown reason (e.g. an UNDEFINED instruction routed to EL2).
    assert_eq!(
        decode(0x0200_0000, 0, 0),
        Exit::Unknown {
            ec: 0,
            iss: 0,
            il: true
        }
    );
    // SError with an ISS, and an HVC from AArch32 (EC 0x12).
    assert_eq!(
        decode(esr(0x2f, true, 0x1_2345), 0, 0),
        Exit::Unknown {
            ec: 0x2f,
            iss: 0x1_2345,
            il: true
        }
    );
    assert_eq!(
        decode(esr(0x12, false, 7), 0, 0),
        Exit::Unknown {
            ec: 0x12,
            iss: 7,
            il: false
        }
    );
    // An EC value aarch64-cpu does not name (0x3f is unallocated).
    assert_eq!(
        decode(esr(0x3f, true, 1), 0, 0),
        Exit::Unknown {
            ec: 0x3f,
            iss: 1,
            il: true
        }
    );
    // Bits above the ISS (ISS2 at [36:32]) do not disturb the decode.
    assert_eq!(
        decode((0x1f << 32) | 0x5a00_0000, 0, 0),
        Exit::Hvc { imm: 0 }
    );
}

#[test]
fn instruction_length_follows_il() {
    assert_eq!(instruction_length(esr(0x01, true, 0)), 4);
    // A 16-bit T32 WFI from AArch32 has IL=0.
    assert_eq!(instruction_length(esr(0x01, false, 0)), 2);
}

/// Random syndromes (ESR_EL2 with FAR_EL2 and HPFAR_EL2, the named exception classes
/// half the time) through the decoder, the emulated load's register value and the
/// MMIO bus claim, with [`crate::fuzzing::trap`]'s invariants.
#[test]
fn random_syndromes_never_panic() {
    let mut rng = crate::testing::Rng::new(2);
    let mut emulable = 0;
    for _ in 0..100_000 {
        let mut data = alloc::vec::Vec::new();
        for _ in 0..4 {
            data.extend_from_slice(&rng.interesting().to_le_bytes());
        }
        data.insert(8, rng.next() as u8);
        if let Exit::DataAbort(da) = crate::fuzzing::trap(&data) {
            emulable += usize::from(da.isv);
        }
    }
    // Data aborts with a valid syndrome reach the load extension and the bus.
    assert!(emulable > 1000, "only {emulable} emulable data aborts");
}

/// Random guest MMIO sequences against the emulated devices every VM has (vGIC
/// distributor and redistributors, PL011), with [`crate::fuzzing::mmio`].
#[test]
fn random_mmio_never_panics() {
    let mut rng = crate::testing::Rng::new(3);
    let mut claimed = 0;
    for _ in 0..5000 {
        let mut data = rng.bytes(1);
        for _ in 0..rng.below(40) {
            data.push(rng.next() as u8);
            data.extend_from_slice(&rng.interesting().to_le_bytes());
            data.extend_from_slice(&rng.interesting().to_le_bytes());
        }
        claimed += crate::fuzzing::mmio(&data);
    }
    assert!(claimed > 20_000, "only {claimed} accesses reached a device");
}
