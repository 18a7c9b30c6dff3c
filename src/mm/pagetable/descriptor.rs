//! VMSAv8-64 translation table descriptors for the 4 KiB granule and 48-bit output
//! addresses (no FEAT_LPA2), as tock-registers bitfields.
//!
//! Arm ARM (DDI 0487) D8.3 "Translation table descriptor formats": bit 0 is the valid
//! bit; at levels 0..=2 bit 1 tells a table descriptor (1) from a block descriptor (0),
//! at level 3 a page descriptor has bit 1 set (and bit 1 clear is reserved, treated
//! as invalid). Table, block and page descriptors all hold an address in bits [47:12];
//! for a block the low bits of that field below the block size are RES0.
//!
//! The lower and upper attributes of block and page descriptors differ between a
//! stage 1 and a stage 2 regime: they are [`S2_LEAF`] and [`EL2_LEAF`].

use tock_registers::register_bitfields;

register_bitfields! {u64,
    /// Fields shared by every descriptor (Arm ARM D8.3.1).
    pub(crate) DESC [
        /// 1: the descriptor is valid; 0: any lookup through it faults.
        VALID OFFSET(0) NUMBITS(1) [],
        /// Levels 0..=2: 0 = block, 1 = table. Level 3: 1 = page.
        TYPE OFFSET(1) NUMBITS(1) [
            Block = 0,
            TableOrPage = 1,
        ],
        /// Next-level table address or output address, bits [47:12] of it.
        ADDR OFFSET(12) NUMBITS(36) [],
    ],

    /// Stage 2 block and page descriptor attributes (Arm ARM D8.3.2, D8.5 and
    /// D8.6; with HCR_EL2.FWB == 0 MemAttr[3:2] is the outer and MemAttr[1:0] the
    /// inner attribute for Normal memory, MemAttr[3:2] == 0b00 means Device).
    pub(crate) S2_LEAF [
        /// MemAttr[3:0], descriptor bits [5:2].
        MEMATTR OFFSET(2) NUMBITS(4) [
            /// Device-nGnRE.
            DeviceNGnRE = 0b0001,
            /// Normal, Outer and Inner Non-cacheable.
            NormalNonCacheable = 0b0101,
            /// Normal, Outer and Inner Write-Back Cacheable.
            NormalWriteBack = 0b1111,
        ],
        /// S2AP[1:0]: bit 6 permits reads, bit 7 permits writes.
        S2AP OFFSET(6) NUMBITS(2) [
            NoAccess = 0b00,
            ReadOnly = 0b01,
            WriteOnly = 0b10,
            ReadWrite = 0b11,
        ],
        /// Shareability of Normal memory (ignored for Device memory).
        SH OFFSET(8) NUMBITS(2) [
            NonShareable = 0b00,
            OuterShareable = 0b10,
            InnerShareable = 0b11,
        ],
        /// Access flag: with VTCR_EL2.HA == 0 an access through a descriptor with
        /// AF == 0 takes an Access flag fault, so the builder always sets it.
        AF OFFSET(10) NUMBITS(1) [],
        /// Hint that this entry is one of 16 adjacent ones with the same mapping.
        CONTIGUOUS OFFSET(52) NUMBITS(1) [],
        /// XN (XN[1] with FEAT_XNX, whose XN[0] in bit 53 the builder leaves 0):
        /// execution not permitted at EL1 or EL0.
        XN OFFSET(54) NUMBITS(1) [],
    ],

    /// Stage 1 block and page descriptor attributes for the EL2 translation regime
    /// with HCR_EL2.E2H == 0, a regime with one Exception level (Arm ARM D8.3.2,
    /// D8.4). AP[1] is RES1 there and PXN/nG do not apply.
    pub(crate) EL2_LEAF [
        /// AttrIndx[2:0]: index into MAIR_EL2 (see `el2::MAIR_EL2_VALUE`).
        ATTR_INDX OFFSET(2) NUMBITS(3) [
            Device = 0,
            Normal = 1,
            NormalNonCacheable = 2,
        ],
        /// Non-secure bit, only meaningful for accesses from Secure state.
        NS OFFSET(5) NUMBITS(1) [],
        /// AP[2:1]: AP[2] set = read-only; AP[1] is RES1 in this regime.
        AP OFFSET(6) NUMBITS(2) [
            ReadWrite = 0b01,
            ReadOnly = 0b11,
        ],
        /// Shareability of Normal memory (ignored for Device memory).
        SH OFFSET(8) NUMBITS(2) [
            NonShareable = 0b00,
            OuterShareable = 0b10,
            InnerShareable = 0b11,
        ],
        /// Access flag; TCR_EL2.HA == 0, so it is always set.
        AF OFFSET(10) NUMBITS(1) [],
        /// Hint that this entry is one of 16 adjacent ones with the same mapping.
        CONTIGUOUS OFFSET(52) NUMBITS(1) [],
        /// XN: execute-never at EL2.
        XN OFFSET(54) NUMBITS(1) [],
    ]
}
