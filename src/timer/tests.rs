use super::*;
use crate::vgic::{Vgic, VgicConfig};
use alloc::vec;

const ENABLE: u64 = 1;
const IMASK: u64 = 2;
const ISTATUS: u64 = 4;

#[test]
fn timer_condition() {
    assert!(asserted(ENABLE | ISTATUS));
    assert!(!asserted(ENABLE | ISTATUS | IMASK), "masked");
    assert!(!asserted(ISTATUS), "disabled");
    assert!(!asserted(ENABLE), "not expired");
}

#[test]
fn saved_timer_deadlines() {
    // Virtual timer: CVAL in virtual counts, the VM's offset added.
    assert_eq!(deadline(ENABLE, 1000, 500), Some(1500));
    assert_eq!(deadline(ENABLE | IMASK, 1000, 500), None, "masked");
    assert_eq!(deadline(0, 1000, 500), None, "disabled");
    assert!(!fires_by(ENABLE, 1000, 500, 1499));
    assert!(fires_by(ENABLE, 1000, 500, 1500));
    // ISTATUS saved with the register is not trusted.
    assert!(!fires_by(ENABLE | ISTATUS, 1000, 0, 10));
    // A compare value at the top of the range never wraps to "now".
    assert_eq!(deadline(ENABLE, u64::MAX - 1, 10), Some(u64::MAX));
}

fn vgic() -> Vgic {
    let mut v = Vgic::new(VgicConfig::new(2, 64)).unwrap();
    // Guest set-up: Group 1 on, PPI 27 and 30 enabled on vCPU 1.
    v.gicd_write(0, 4, 0b10);
    v.gicr_write(0x2_0000 + 0x1_0100, 4, (1 << 27) | (1 << 30));
    v
}

#[test]
fn both_timers_are_hardware_linked() {
    let mut v = vgic();
    link_timers(&mut v).unwrap();
    for intid in [VIRTUAL_TIMER_INTID, PHYSICAL_TIMER_INTID] {
        on_timer_irq(&mut v, 1, intid).unwrap();
    }
    let e = v.flush_lrs(1);
    let mut got: vec::Vec<_> = e
        .lrs
        .iter()
        .map(|&lr| {
            let s = crate::vgic::lr::decode(lr);
            (s.vintid, s.pending, s.active, s.hw)
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![(27, true, false, Some(27)), (30, true, false, Some(30))]
    );
    assert!(v.flush_lrs(0).lrs.is_empty(), "only vCPU 1's PPIs");
}

#[test]
fn timers_resampled_against_the_guests_ctl() {
    let mut v = vgic();
    link_timers(&mut v).unwrap();
    on_timer_irq(&mut v, 1, VIRTUAL_TIMER_INTID).unwrap();
    // Still asserted: stays pending, nothing to give back.
    resample(&mut v, 1, ENABLE | ISTATUS, 0);
    assert!(v.take_actions().is_empty());
    // The guest masked the timer before taking the interrupt.
    resample(&mut v, 1, ENABLE | ISTATUS | IMASK, 0);
    assert_eq!(
        v.take_actions(),
        vec![crate::vgic::HwAction::DeactivatePhysical { vcpu: 1, intid: 27 }]
    );
    assert!(v.flush_lrs(1).lrs.is_empty());
    // Once the guest has acknowledged it, the guest's deactivation handles it.
    on_timer_irq(&mut v, 1, VIRTUAL_TIMER_INTID).unwrap();
    let e = v.flush_lrs(1);
    let mut s = crate::vgic::lr::decode(e.lrs[0]);
    s.pending = false;
    s.active = true;
    v.sync_lrs(1, &[crate::vgic::lr::encode(&s)]);
    resample(&mut v, 1, 0, 0);
    assert!(v.take_actions().is_empty());
    // The physical timer the same way.
    on_timer_irq(&mut v, 0, PHYSICAL_TIMER_INTID).unwrap();
    resample(&mut v, 0, 0, ENABLE);
    assert_eq!(
        v.take_actions(),
        vec![crate::vgic::HwAction::DeactivatePhysical { vcpu: 0, intid: 30 }]
    );
}
