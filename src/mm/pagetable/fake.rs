//! A [`TableMemory`] for host tests: boxed zeroed pages at made-up physical
//! addresses, handed out upwards from a base, with a limit to test exhaustion.

use super::{ENTRIES_PER_TABLE, TableMemory};
use crate::mm::region::{PAGE_SIZE, align_up};
use std::boxed::Box;
use std::collections::HashMap;

pub(crate) struct FakeTableMemory {
    pages: HashMap<u64, Box<[u64; ENTRIES_PER_TABLE]>>,
    next: u64,
    /// Pages that may still be allocated.
    budget: usize,
    /// Every `alloc_tables` call's (pa, pages), to check alignment.
    pub(crate) allocations: std::vec::Vec<(u64, usize)>,
}

impl FakeTableMemory {
    /// Fake PAs start at 0x1_0000_0000, far from the addresses the tests map.
    pub(crate) fn new() -> Self {
        Self::with_budget(usize::MAX)
    }

    pub(crate) fn with_budget(budget: usize) -> Self {
        Self {
            pages: HashMap::new(),
            next: 0x1_0000_0000,
            budget,
            allocations: std::vec::Vec::new(),
        }
    }

    /// Pages handed out and not freed.
    pub(crate) fn live_pages(&self) -> usize {
        self.pages.len()
    }
}

impl TableMemory for FakeTableMemory {
    fn alloc_tables(&mut self, pages: usize) -> Option<u64> {
        if pages > self.budget {
            return None;
        }
        self.budget -= pages;
        let pa = align_up(self.next, pages as u64 * PAGE_SIZE)?;
        self.next = pa + pages as u64 * PAGE_SIZE;
        for i in 0..pages as u64 {
            self.pages
                .insert(pa + i * PAGE_SIZE, Box::new([0; ENTRIES_PER_TABLE]));
        }
        self.allocations.push((pa, pages));
        Some(pa)
    }

    fn free_tables(&mut self, pa: u64, pages: usize) {
        for i in 0..pages as u64 {
            assert!(
                self.pages.remove(&(pa + i * PAGE_SIZE)).is_some(),
                "freeing table {pa:#x} that is not allocated"
            );
        }
        self.budget = self.budget.saturating_add(pages);
    }

    fn table(&mut self, pa: u64) -> &mut [u64; ENTRIES_PER_TABLE] {
        self.pages
            .get_mut(&pa)
            .unwrap_or_else(|| panic!("no table at {pa:#x}"))
    }
}
