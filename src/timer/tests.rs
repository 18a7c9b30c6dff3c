use super::*;
use crate::vgic::{Vgic, VgicConfig};
use alloc::vec;

const ENABLE: u64 = 1;
const IMASK: u64 = 2;
const ISTATUS: u64 = 4;

#[test]
fn virtual_timer_condition() {
    assert!(virtual_timer_asserted(ENABLE | ISTATUS));
    assert!(!virtual_timer_asserted(ENABLE | ISTATUS | IMASK), "masked");
    assert!(!virtual_timer_asserted(ISTATUS), "disabled");
    assert!(!virtual_timer_asserted(ENABLE), "not expired");
}

#[test]
fn phys_timer_cval_and_istatus() {
    let mut t = EmulatedPhysTimer::new();
    assert_eq!(
        t.trap(CNTP_CVAL_EL0, true, 1000, 0),
        Some(SysRegResult::Done)
    );
    assert_eq!(
        t.trap(CNTP_CTL_EL0, true, ENABLE, 0),
        Some(SysRegResult::Done)
    );
    assert_eq!(
        t.trap(CNTP_CTL_EL0, false, 0, 999),
        Some(SysRegResult::Read(ENABLE))
    );
    assert_eq!(
        t.trap(CNTP_CTL_EL0, false, 0, 1000),
        Some(SysRegResult::Read(ENABLE | ISTATUS))
    );
    assert!(!t.asserted(999));
    assert!(t.asserted(1000));
    // ISTATUS written by the guest is ignored (read-only).
    t.trap(CNTP_CTL_EL0, true, ENABLE | IMASK | ISTATUS, 0);
    assert_eq!(t.read_ctl(0), ENABLE | IMASK);
    assert!(!t.asserted(2000), "masked");
}

#[test]
fn phys_timer_tval_is_signed_32_bit() {
    let mut t = EmulatedPhysTimer::new();
    t.trap(CNTP_TVAL_EL0, true, 500, 10_000);
    assert_eq!(
        t.trap(CNTP_CVAL_EL0, false, 0, 0),
        Some(SysRegResult::Read(10_500))
    );
    assert_eq!(
        t.trap(CNTP_TVAL_EL0, false, 0, 10_100),
        Some(SysRegResult::Read(400))
    );
    // Past the compare value TVAL reads negative (two's complement, 32 bits).
    assert_eq!(
        t.trap(CNTP_TVAL_EL0, false, 0, 10_501),
        Some(SysRegResult::Read(0xffff_ffff))
    );
    // A negative TVAL puts CVAL in the past.
    t.trap(CNTP_TVAL_EL0, true, (-10i32) as u32 as u64, 10_000);
    assert_eq!(
        t.trap(CNTP_CVAL_EL0, false, 0, 0),
        Some(SysRegResult::Read(9_990))
    );
    assert_eq!(
        t.trap(SysReg::new(3, 3, 14, 3, 1), false, 0, 0),
        None,
        "CNTV_CTL is not trapped here"
    );
}

#[test]
fn phys_timer_host_deadline() {
    let mut t = EmulatedPhysTimer::new();
    t.trap(CNTP_CVAL_EL0, true, 5000, 0);
    assert_eq!(t.host_deadline(0), None, "disabled");
    t.trap(CNTP_CTL_EL0, true, ENABLE, 0);
    assert_eq!(t.host_deadline(100), Some(5000));
    assert_eq!(t.hyp_timer_setting(100), (1, 5000));
    assert_eq!(
        t.host_deadline(5000),
        None,
        "expired: PPI 30 is asserted instead"
    );
    t.trap(CNTP_CTL_EL0, true, ENABLE | IMASK, 0);
    assert_eq!(t.host_deadline(100), None, "masked");
    assert_eq!(t.hyp_timer_setting(100), (0, 0));
}

fn vgic() -> Vgic {
    let mut v = Vgic::new(VgicConfig::new(2, 64)).unwrap();
    // Guest set-up: Group 1 on, PPI 27 and 30 enabled on vCPU 1.
    v.gicd_write(0, 4, 0b10);
    v.gicr_write(0x2_0000 + 0x1_0100, 4, (1 << 27) | (1 << 30));
    v
}

#[test]
fn phys_timer_drives_ppi30_level() {
    let mut v = vgic();
    let mut t = EmulatedPhysTimer::new();
    t.trap(CNTP_CVAL_EL0, true, 100, 0);
    t.trap(CNTP_CTL_EL0, true, ENABLE, 0);
    t.sync(&mut v, 1, 50).unwrap();
    assert!(v.flush_lrs(1).lrs.is_empty());
    t.sync(&mut v, 1, 100).unwrap();
    let e = v.flush_lrs(1);
    assert_eq!(e.lrs.len(), 1);
    let s = crate::vgic::lr::decode(e.lrs[0]);
    assert_eq!(
        (s.vintid, s.pending, s.hw, s.eoi_maintenance),
        (30, true, None, true)
    );
    assert!(v.flush_lrs(0).lrs.is_empty(), "only vCPU 1's PPI");
}

#[test]
fn virtual_timer_is_hardware_linked() {
    let mut v = vgic();
    link_virtual_timer(&mut v).unwrap();
    on_virtual_timer_irq(&mut v, 1).unwrap();
    let e = v.flush_lrs(1);
    let s = crate::vgic::lr::decode(e.lrs[0]);
    assert_eq!(
        (s.vintid, s.pending, s.active, s.hw),
        (27, true, false, Some(27))
    );
}

#[test]
fn virtual_timer_resampled_on_exit() {
    let mut v = vgic();
    link_virtual_timer(&mut v).unwrap();
    on_virtual_timer_irq(&mut v, 1).unwrap();
    // Still asserted: stays pending, nothing to give back.
    resample_virtual_timer(&mut v, 1, ENABLE | ISTATUS).unwrap();
    assert!(v.take_actions().is_empty());
    // The guest masked the timer before taking the interrupt.
    resample_virtual_timer(&mut v, 1, ENABLE | ISTATUS | IMASK).unwrap();
    assert_eq!(
        v.take_actions(),
        vec![crate::vgic::HwAction::DeactivatePhysical { vcpu: 1, intid: 27 }]
    );
    assert!(v.flush_lrs(1).lrs.is_empty());
    // Once the guest has acknowledged it, the guest's deactivation handles it.
    on_virtual_timer_irq(&mut v, 1).unwrap();
    let e = v.flush_lrs(1);
    let mut s = crate::vgic::lr::decode(e.lrs[0]);
    s.pending = false;
    s.active = true;
    v.sync_lrs(1, &[crate::vgic::lr::encode(&s)]);
    resample_virtual_timer(&mut v, 1, 0).unwrap();
    assert!(v.take_actions().is_empty());
    assert!(
        resample_virtual_timer(&mut v, 0, 0).is_ok(),
        "vCPU 0 is linked too"
    );
}
