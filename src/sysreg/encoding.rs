//! System-register encodings as the Arm ARM writes them: `S<op0>_<op1>_C<n>_C<m>_<op2>`.

use core::fmt;

/// One system-register encoding (Op0, Op1, CRn, CRm, Op2), ordered the way the
/// descriptor table is sorted: by the packed value, so op0 is the most significant.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SysReg(u32);

impl SysReg {
    /// Packs an encoding. Field widths follow the ISS of an EC 0x18 trap
    /// (Arm ARM, ESR_EL2: ISS encoding for an exception from MSR, MRS, or System
    /// instruction execution in AArch64 state).
    pub const fn new(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> Self {
        SysReg(
            ((op0 as u32 & 0x3) << 14)
                | ((op1 as u32 & 0x7) << 11)
                | ((crn as u32 & 0xf) << 7)
                | ((crm as u32 & 0xf) << 3)
                | (op2 as u32 & 0x7),
        )
    }
    pub const fn op0(self) -> u8 {
        ((self.0 >> 14) & 0x3) as u8
    }
    pub const fn op1(self) -> u8 {
        ((self.0 >> 11) & 0x7) as u8
    }
    pub const fn crn(self) -> u8 {
        ((self.0 >> 7) & 0xf) as u8
    }
    pub const fn crm(self) -> u8 {
        ((self.0 >> 3) & 0xf) as u8
    }
    pub const fn op2(self) -> u8 {
        (self.0 & 0x7) as u8
    }
    /// The packed value, for sorting and logging.
    pub const fn packed(self) -> u32 {
        self.0
    }
}

impl fmt::Debug for SysReg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "S{}_{}_C{}_C{}_{}",
            self.op0(),
            self.op1(),
            self.crn(),
            self.crm(),
            self.op2()
        )
    }
}

impl fmt::Display for SysReg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        // CCSIDR_EL1 is S3_1_C0_C0_0.
        let r = SysReg::new(3, 1, 0, 0, 0);
        assert_eq!(
            (r.op0(), r.op1(), r.crn(), r.crm(), r.op2()),
            (3, 1, 0, 0, 0)
        );
        assert_eq!(format!("{r}"), "S3_1_C0_C0_0");
        let r = SysReg::new(2, 7, 15, 14, 6);
        assert_eq!(
            (r.op0(), r.op1(), r.crn(), r.crm(), r.op2()),
            (2, 7, 15, 14, 6)
        );
    }

    #[test]
    fn order_is_op0_major() {
        assert!(SysReg::new(2, 7, 15, 15, 7) < SysReg::new(3, 0, 0, 0, 0));
        assert!(SysReg::new(3, 0, 0, 1, 0) < SysReg::new(3, 0, 1, 0, 0));
    }
}
