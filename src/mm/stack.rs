//! The EL2 stacks: where each CPU's stack and its guard page lie, which stack a
//! faulting address belongs to, and how much of a stack has ever been used.
//!
//! Every CPU has one stack, and below it a guard page that the EL2 map leaves
//! unmapped, so running off the bottom of a stack is a translation fault instead of
//! a silent write into whatever lies below (the next CPU's stack, or the end of BSS
//! where the heap is). rustc emits inline stack probes on aarch64: a frame larger
//! than a page stores to each page as it is allocated (visible in the disassembly of
//! any big frame: `sub sp, sp, #0x1000; str xzr, [sp]` in a loop), so no frame can
//! step over a one-page guard without touching it. A second, small set of stacks (the emergency
//! stacks, each with its own guard) is where the EL2 exception vector reports a
//! fault from, since the faulting CPU's own stack may be the one that overflowed.
//!
//! Stacks are painted with [`PAINT`] at boot; the lowest word that no longer holds
//! it is the stack's high-water mark.

use crate::mm::PhysRange;

/// What every stack word holds before it is first used (ASCII "FVSTACK!"). Any
/// value works that a stack word is unlikely to hold; a zero would not do, as
/// zeros are the commonest values stored.
pub const PAINT: u64 = 0x2141_4b43_5453_5646;

/// One array of stacks, each `size` bytes with a `guard` below it, `count` of
/// them from `base` upwards: slot `i` is `[guard | stack]` at `base + i * (guard + size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackArray {
    pub base: u64,
    pub size: u64,
    pub guard: u64,
    pub count: usize,
}

impl StackArray {
    fn slot(&self) -> u64 {
        self.guard + self.size
    }

    /// The guard page(s) below stack `i` (unmapped).
    pub fn guard(&self, i: usize) -> PhysRange {
        let start = self.base + i as u64 * self.slot();
        PhysRange::new(start, start + self.guard)
    }

    /// Stack `i` itself, `[bottom, top)`; the CPU starts with SP = top.
    pub fn stack(&self, i: usize) -> PhysRange {
        let bottom = self.base + i as u64 * self.slot() + self.guard;
        PhysRange::new(bottom, bottom + self.size)
    }

    /// The initial stack pointer of stack `i`.
    pub fn top(&self, i: usize) -> u64 {
        self.stack(i).end
    }

    /// Every guard range, lowest first.
    pub fn guards(&self) -> impl Iterator<Item = PhysRange> + '_ {
        (0..self.count).map(|i| self.guard(i))
    }

    /// The whole array, guards included.
    pub fn range(&self) -> PhysRange {
        PhysRange::new(self.base, self.base + self.count as u64 * self.slot())
    }

    /// The stack whose guard holds `addr`: an access there is that stack's
    /// overflow.
    pub fn guard_hit(&self, addr: u64) -> Option<usize> {
        (0..self.count).find(|&i| self.guard(i).contains(addr))
    }
}

/// What an EL2 fault says about the stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackFault {
    /// CPU `cpu`'s stack ran into its guard page.
    Overflow { cpu: usize },
    /// The fault has nothing to do with a guard page.
    Other,
}

/// Whether a fault taken at EL2 is a stack overflow: the faulting address
/// (FAR_EL2, valid for a data abort) or the stack pointer at the time lies in a
/// guard page of `stacks`. A Data Abort taken without a change in Exception
/// level has ESR_EL2.EC 0x25; an SP in the guard is checked too, because an
/// exception taken while SP already points into the guard may be another kind
/// (an SP alignment fault, or an instruction that faulted first).
pub fn classify_el2_fault(stacks: &StackArray, esr: u64, far: u64, sp: u64) -> StackFault {
    const EC_DATA_ABORT_SAME_EL: u64 = 0x25;
    let far_hit = if esr >> 26 == EC_DATA_ABORT_SAME_EL {
        stacks.guard_hit(far)
    } else {
        None
    };
    match far_hit.or_else(|| stacks.guard_hit(sp)) {
        Some(cpu) => StackFault::Overflow { cpu },
        None => StackFault::Other,
    }
}

/// Bytes of a painted stack that have been used: the stack grows down from the
/// end of `words`, so everything above the lowest word that lost its paint
/// counts as used.
pub fn high_water(words: &[u64]) -> usize {
    let untouched = words.iter().take_while(|&&w| w == PAINT).count();
    (words.len() - untouched) * core::mem::size_of::<u64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STACKS: StackArray = StackArray {
        base: 0x4100_0000,
        size: 0x1_0000,
        guard: 0x1000,
        count: 4,
    };

    #[test]
    fn slots_alternate_guard_and_stack() {
        assert_eq!(STACKS.guard(0), PhysRange::new(0x4100_0000, 0x4100_1000));
        assert_eq!(STACKS.stack(0), PhysRange::new(0x4100_1000, 0x4101_1000));
        assert_eq!(STACKS.guard(1), PhysRange::new(0x4101_1000, 0x4101_2000));
        assert_eq!(STACKS.top(1), 0x4102_2000);
        assert_eq!(STACKS.range(), PhysRange::new(0x4100_0000, 0x4104_4000));
        assert_eq!(STACKS.guards().count(), 4);
        // Each stack sits right above its own guard, and nothing overlaps.
        for i in 0..STACKS.count {
            assert_eq!(STACKS.guard(i).end, STACKS.stack(i).start);
            if i > 0 {
                assert_eq!(STACKS.stack(i - 1).end, STACKS.guard(i).start);
            }
        }
    }

    #[test]
    fn guard_hit_names_the_stack_that_ran_off_its_bottom() {
        // One word below stack 2's bottom.
        assert_eq!(STACKS.guard_hit(STACKS.stack(2).start - 8), Some(2));
        assert_eq!(STACKS.guard_hit(STACKS.guard(3).start), Some(3));
        // Inside a stack, or outside the array: not a guard.
        assert_eq!(STACKS.guard_hit(STACKS.stack(2).start), None);
        assert_eq!(STACKS.guard_hit(STACKS.top(3)), None);
        assert_eq!(STACKS.guard_hit(0x1), None);
    }

    #[test]
    fn a_data_abort_on_a_guard_page_is_an_overflow() {
        let in_guard = STACKS.stack(1).start - 0x10;
        let dabt_same_el = 0x25 << 26 | 0x47; // a translation fault, level 3, write
        assert_eq!(
            classify_el2_fault(&STACKS, dabt_same_el, in_guard, in_guard),
            StackFault::Overflow { cpu: 1 }
        );
        // FAR is only meaningful for a data abort; an SP in the guard still says overflow.
        let sp_alignment = 0x26 << 26;
        assert_eq!(
            classify_el2_fault(&STACKS, sp_alignment, 0, in_guard),
            StackFault::Overflow { cpu: 1 }
        );
        // A fault elsewhere (the heap's FAR 0x1 of a corrupted free list) is not.
        assert_eq!(
            classify_el2_fault(&STACKS, 0x9600_0021, 0x1, STACKS.top(0) - 0x100),
            StackFault::Other
        );
        // An instruction abort's FAR in a guard (a jump there) is not read as a
        // data access to it.
        assert_eq!(
            classify_el2_fault(&STACKS, 0x21 << 26, in_guard, STACKS.top(0) - 0x100),
            StackFault::Other
        );
    }

    #[test]
    fn high_water_counts_from_the_lowest_touched_word() {
        let mut words = [PAINT; 16];
        assert_eq!(high_water(&words), 0);
        words[15] = 0;
        assert_eq!(high_water(&words), 8);
        // A word left untouched above the lowest touched one (a frame's unused
        // slot) still counts as used.
        words[10] = 7;
        assert_eq!(high_water(&words), 6 * 8);
        words[0] = 1;
        assert_eq!(high_water(&words), 128);
    }
}
