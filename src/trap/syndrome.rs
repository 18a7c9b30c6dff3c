//! ISS layouts of ESR_EL2, one `register_bitfields!` block per exception class.
//!
//! Every field sits at its bit position within the whole 64-bit ESR_EL2 value (the ISS
//! is bits [24:0]), so each layout reads straight from the raw syndrome. EC and IL
//! come from aarch64-cpu's `ESR_EL2` definition; this file holds only what that crate
//! leaves as one opaque `ISS` field.
//!
//! Source of every layout: Arm ARM (DDI 0487), D24.2 "ESR_EL2, Exception Syndrome
//! Register (EL2)", under the named "ISS encoding for an exception from ..." headings.

use tock_registers::register_bitfields;

register_bitfields! {u64,
    /// ISS encoding for an exception from a WF* instruction (EC 0b000001).
    pub(crate) ISS_WFX [
        /// Condition code valid. RES1 for a trap from AArch64 (with COND = 0b1110).
        CV OFFSET(24) NUMBITS(1) [],
        COND OFFSET(20) NUMBITS(4) [],
        /// FEAT_WFxT: the register holding the WFIT/WFET timeout.
        RN OFFSET(5) NUMBITS(5) [],
        /// FEAT_WFxT: RN is valid.
        RV OFFSET(2) NUMBITS(1) [],
        /// Trapped instruction type.
        TI OFFSET(0) NUMBITS(2) [
            Wfi = 0b00,
            Wfe = 0b01,
            Wfit = 0b10,
            Wfet = 0b11
        ]
    ],

    /// ISS encoding for an exception from HVC or SMC (EC 0b010110 / 0b010111).
    pub(crate) ISS_IMM16 [
        /// The immediate of the HVC/SMC instruction.
        IMM16 OFFSET(0) NUMBITS(16) []
    ],

    /// ISS encoding for an exception from MSR, MRS, or System instruction execution in
    /// AArch64 state (EC 0b011000).
    pub(crate) ISS_SYSREG [
        OP0 OFFSET(20) NUMBITS(2) [],
        OP2 OFFSET(17) NUMBITS(3) [],
        OP1 OFFSET(14) NUMBITS(3) [],
        CRN OFFSET(10) NUMBITS(4) [],
        /// The general-purpose register transferred; 31 means XZR.
        RT OFFSET(5) NUMBITS(5) [],
        CRM OFFSET(1) NUMBITS(4) [],
        /// 0: write (MSR, or a System instruction); 1: read (MRS).
        DIRECTION OFFSET(0) NUMBITS(1) [
            Write = 0,
            Read = 1
        ]
    ],

    /// ISS encoding for an exception from a Data Abort (EC 0b100100 / 0b100101).
    pub(crate) ISS_DABT [
        /// Instruction syndrome valid: ISS[23:14] describe the access.
        ISV OFFSET(24) NUMBITS(1) [],
        /// Syndrome Access Size.
        SAS OFFSET(22) NUMBITS(2) [
            Byte = 0b00,
            Halfword = 0b01,
            Word = 0b10,
            Doubleword = 0b11
        ],
        /// Syndrome Sign Extend: a load that sign-extends the value.
        SSE OFFSET(21) NUMBITS(1) [],
        /// Syndrome Register Transfer: the Rt/Wt of the load or store.
        SRT OFFSET(16) NUMBITS(5) [],
        /// Sixty-Four: the register is Xt (1) or Wt (0).
        SF OFFSET(15) NUMBITS(1) [],
        /// Acquire/Release semantics.
        AR OFFSET(14) NUMBITS(1) [],
        /// FEAT_NV2: the fault came from a VNCR_EL2-relative access.
        VNCR OFFSET(13) NUMBITS(1) [],
        /// FAR not Valid.
        FNV OFFSET(10) NUMBITS(1) [],
        /// External abort type.
        EA OFFSET(9) NUMBITS(1) [],
        /// Cache maintenance: the fault came from a cache maintenance or AT instruction.
        CM OFFSET(8) NUMBITS(1) [],
        /// Stage-2 fault on a stage-1 translation table walk.
        S1PTW OFFSET(7) NUMBITS(1) [],
        /// Write not Read.
        WNR OFFSET(6) NUMBITS(1) [],
        /// Data Fault Status Code.
        DFSC OFFSET(0) NUMBITS(6) []
    ],

    /// ISS encoding for an exception from an Instruction Abort (EC 0b100000 / 0b100001).
    pub(crate) ISS_IABT [
        FNV OFFSET(10) NUMBITS(1) [],
        EA OFFSET(9) NUMBITS(1) [],
        S1PTW OFFSET(7) NUMBITS(1) [],
        /// Instruction Fault Status Code.
        IFSC OFFSET(0) NUMBITS(6) []
    ],

    /// ISS encoding for an exception from SME functionality (EC 0b011101).
    pub(crate) ISS_SME [
        /// SME Trap Code: 0 = trapped by CPACR/CPTR/SMCR controls (the lazy-switch trap).
        SMTC OFFSET(0) NUMBITS(3) []
    ],

    /// ISS encoding for an exception from a Software Step exception (EC 0b11001x).
    pub(crate) ISS_SOFTSTEP [
        /// EX is valid.
        ISV OFFSET(24) NUMBITS(1) [],
        /// The stepped instruction was a Load-Exclusive.
        EX OFFSET(6) NUMBITS(1) []
    ],

    /// ISS encoding for an exception from a Watchpoint exception (EC 0b11010x).
    pub(crate) ISS_WATCHPOINT [
        CM OFFSET(8) NUMBITS(1) [],
        WNR OFFSET(6) NUMBITS(1) []
    ],

    /// ISS encoding for an exception from execution of a Breakpoint instruction (BRK,
    /// EC 0b111100).
    pub(crate) ISS_BRK [
        /// The immediate of the BRK instruction.
        COMMENT OFFSET(0) NUMBITS(16) []
    ]
}
