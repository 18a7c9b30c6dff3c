//! Translation-table builder for the 4 KiB granule, for two regimes:
//! stage 2 of the EL1&0 regime ([`Stage2Geometry`], tables behind VTTBR_EL2) and the
//! EL2 stage 1 with HCR_EL2.E2H == 0 ([`El2Geometry`], tables behind TTBR0_EL2).
//!
//! The builder is plain logic. Table memory comes through [`TableMemory`], which the
//! arch layer implements over identity-mapped frames (and the tests over a map of
//! boxed pages). It never executes a TLB or barrier instruction: every operation that
//! invalidates a valid entry says what must be invalidated, as a [`TlbFlush`].
//!
//! # TLB maintenance and break-before-make
//! Arm ARM D8.13 (TLB maintenance) and D8.16.1 (break-before-make):
//! - A TLB never holds an entry that translates to a Translation fault, so writing a
//!   valid descriptor where there was an invalid one needs no TLB invalidation. That
//!   is all [`PageTable::map`] ever does: it refuses ([`MapError::AlreadyMapped`]) to
//!   touch an address that is mapped, and it links new tables only into invalid
//!   slots. The arch layer issues `dsb ishst` before the new entries are relied on.
//! - Removing a valid entry ([`PageTable::unmap`]) returns the [`TlbFlush`] the
//!   caller must perform before the unmapped output addresses are reused: for stage 2
//!   `dsb ishst; tlbi ipas2e1is` per stride in the range (or `tlbi vmalls12e1is` for
//!   [`TlbFlush::All`]), then `dsb ish; tlbi vmalle1is; dsb ish; isb`, because an
//!   IPA-based invalidation does not remove combined stage 1+2 entries; for the EL2
//!   regime `tlbi vae2is` per stride (or `tlbi alle2is`), then `dsb ish; isb`.
//! - Changing a valid entry to a different valid one (another output address or
//!   attributes, or a block split into a table of smaller entries, which changes the
//!   block size) requires break-before-make: write an invalid descriptor, complete
//!   the TLB invalidation above, only then write the new descriptor. The builder
//!   does the break and the make, and calls the caller's `bbm` closure with the
//!   [`TlbFlush`] in between; the closure must not return before the invalidation is
//!   complete (`dsb ishst` first, so the walkers see the invalid entry and any new
//!   subtable the make will link; the TLBIs; then `dsb ish`). [`PageTable::replace`] and the block splits inside
//!   [`PageTable::unmap`] work that way. Between break and make the addresses fault:
//!   a vCPU of a running VM may take a stage 2 abort on them and must retry once the
//!   update is done (or the VM's vCPUs are kept out while its stage 2 changes).
//!
//! Tables emptied by `unmap` stay linked and are reused by later maps; they go back
//! to the table memory in [`PageTable::destroy`].

mod descriptor;
pub mod el2;
pub mod stage2;

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;

pub use el2::{El2Attrs, El2Geometry, El2MemType, MAIR_EL2_VALUE, ttbr0_el2};
pub use stage2::{S2Attrs, S2MemType, Stage2Geometry, vttbr_el2};

use super::region::{PAGE_SHIFT, PAGE_SIZE, is_aligned};
use descriptor::DESC;
use tock_registers::LocalRegisterCopy;

/// Descriptors in one 4 KiB table.
pub const ENTRIES_PER_TABLE: usize = 512;
/// Address bits one table level resolves with the 4 KiB granule.
const BITS_PER_LEVEL: u32 = 9;
/// The level of page descriptors.
const LAST_LEVEL: usize = 3;
/// The architectural limit on concatenated initial-level stage 2 tables (Arm ARM
/// D8.2.x, "concatenated translation tables": at most 16).
pub const MAX_ROOT_TABLES: usize = 16;
/// An unmap that would need more TLB invalidations by address than this reports
/// [`TlbFlush::All`] instead: one broadcast invalidation of the whole VMID (or of
/// the EL2 regime) is cheaper than thousands by address.
pub const MAX_TLBI_BY_ADDRESS: u64 = 512;

/// Address bits below the index of a `level` table: 39, 30, 21, 12 for levels 0..=3.
pub const fn level_shift(level: usize) -> u32 {
    PAGE_SHIFT + BITS_PER_LEVEL * (LAST_LEVEL - level) as u32
}

/// Bytes one descriptor at `level` maps: 512 GiB, 1 GiB, 2 MiB, 4 KiB.
pub const fn level_size(level: usize) -> u64 {
    1 << level_shift(level)
}

/// Memory for translation tables, provided by the arch layer.
///
/// On hardware the tables are identity-mapped frames from the frame allocator, and
/// [`TableMemory::table`] is the one `unsafe` cast, done in `arch`. The tables must
/// be Normal Write-Back Inner Shareable memory, which is what VTCR_EL2 / TCR_EL2
/// tell the walker (IRGN0/ORGN0/SH0).
pub trait TableMemory {
    /// `pages` contiguous zeroed 4 KiB tables whose first address is aligned to
    /// `pages` * 4 KiB. `pages` is a power of two, at most [`MAX_ROOT_TABLES`]: a
    /// concatenated stage 2 root must be aligned to its total size (Arm ARM,
    /// VTTBR_EL2.BADDR). `None` if there is no memory.
    fn alloc_tables(&mut self, pages: usize) -> Option<u64>;

    /// Gives back tables from [`TableMemory::alloc_tables`], with the same `pages`.
    /// The builder only does that for tables that no walker can still reach.
    fn free_tables(&mut self, pa: u64, pages: usize);

    /// The 512 descriptors of the table at `pa`.
    fn table(&mut self, pa: u64) -> &mut [u64; ENTRIES_PER_TABLE];

    /// One zeroed 4 KiB-aligned table.
    fn alloc_table(&mut self) -> Option<u64> {
        self.alloc_tables(1)
    }
}

/// TLB invalidation the caller must perform (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "stale TLB entries must be invalidated before the memory is reused"]
pub enum TlbFlush {
    /// No valid entry was changed.
    None,
    /// Invalidate by address every `stride` bytes in `[start, start + size)`
    /// (IPAs for stage 2, VAs for the EL2 regime). `stride` is the smallest
    /// descriptor size that was removed, so each invalidation hits one entry.
    Range {
        /// First input address.
        start: u64,
        /// Bytes covered.
        size: u64,
        /// Step between invalidations.
        stride: u64,
    },
    /// Invalidate the whole VMID (stage 2) or the whole EL2 regime.
    All,
}

impl TlbFlush {
    /// One flush that covers both.
    pub fn merge(self, other: TlbFlush) -> TlbFlush {
        match (self, other) {
            (TlbFlush::None, f) | (f, TlbFlush::None) => f,
            (TlbFlush::All, _) | (_, TlbFlush::All) => TlbFlush::All,
            (
                TlbFlush::Range {
                    start: a,
                    size: asz,
                    stride: ast,
                },
                TlbFlush::Range {
                    start: b,
                    size: bsz,
                    stride: bst,
                },
            ) => {
                let start = a.min(b);
                let end = (a + asz).max(b + bsz);
                TlbFlush::Range {
                    start,
                    size: end - start,
                    stride: ast.min(bst),
                }
            }
        }
    }

    /// [`TlbFlush::All`] when invalidating by address would take more than
    /// [`MAX_TLBI_BY_ADDRESS`] operations.
    fn bounded(self) -> TlbFlush {
        match self {
            TlbFlush::Range { size, stride, .. } if size / stride > MAX_TLBI_BY_ADDRESS => {
                TlbFlush::All
            }
            f => f,
        }
    }

    fn entry(start: u64, level: usize) -> TlbFlush {
        TlbFlush::Range {
            start,
            size: level_size(level),
            stride: level_size(level),
        }
    }
}

/// Why a table operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// A size of zero.
    EmptyRange,
    /// An address or size that is not a multiple of 4 KiB.
    Misaligned,
    /// The input range goes past the regime's input address size (IPA or VA bits).
    OutOfRange,
    /// The output range goes past the regime's output (physical) address size.
    OutputOutOfRange,
    /// Part of the input range is mapped already; `addr` is the first such address.
    /// Nothing was changed. Use [`PageTable::replace`] to change a mapping.
    AlreadyMapped {
        /// First mapped input address found in the range.
        addr: u64,
    },
    /// [`TableMemory`] had no table left. No translation was changed (empty tables
    /// may have been linked in; they are harmless and get reused).
    OutOfTableMemory,
}

/// Why a translation geometry cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeometryError {
    /// An ID_AA64MMFR0_EL1.PARange value this builder does not know.
    UnsupportedPaRange(u8),
    /// An input address size (IPA or VA bits) the 4 KiB granule cannot translate
    /// from any start level, or that exceeds the output address size for stage 2.
    UnsupportedInputBits(u32),
}

/// Physical address size, in bits, that an ID_AA64MMFR0_EL1.PARange value (or a
/// TCR_EL2.PS / VTCR_EL2.PS value) stands for.
pub const fn pa_range_bits(pa_range: u8) -> Option<u32> {
    match pa_range {
        0b0000 => Some(32),
        0b0001 => Some(36),
        0b0010 => Some(40),
        0b0011 => Some(42),
        0b0100 => Some(44),
        0b0101 => Some(48),
        0b0110 => Some(52),
        _ => None,
    }
}

/// The PARange / PS encoding of the largest output size this builder uses, 48 bits:
/// 52-bit output addresses with the 4 KiB granule need FEAT_LPA2 descriptors
/// (TCR.DS == 1), which it does not write.
const PA_RANGE_48: u8 = 0b0101;

/// A translation regime: its geometry and its leaf descriptor attributes.
pub trait Regime {
    /// The permissions and memory type of a mapping.
    type Attrs: Copy + core::fmt::Debug + PartialEq;

    /// Input address size in bits (IPA for stage 2, VA for stage 1).
    fn input_bits(&self) -> u32;
    /// Output address size in bits.
    fn output_bits(&self) -> u32;
    /// Level of the initial lookup.
    fn start_level(&self) -> usize;
    /// Number of concatenated tables at the initial level (1 at stage 1).
    fn root_tables(&self) -> usize;
    /// The attribute fields of a block or page descriptor (no valid, type or
    /// address bits).
    fn leaf_attrs(attrs: Self::Attrs) -> u64;
    /// The attributes back from a block or page descriptor; `None` for an encoding
    /// the builder never writes.
    fn decode_leaf_attrs(desc: u64) -> Option<Self::Attrs>;
}

/// What one descriptor is.
enum Entry {
    Invalid,
    Table(u64),
    Leaf(u64),
}

fn classify(desc: u64, level: usize) -> Entry {
    let d = LocalRegisterCopy::<u64, DESC::Register>::new(desc);
    let addr = d.read(DESC::ADDR) << PAGE_SHIFT;
    let table_or_page = d.matches_all(DESC::TYPE::TableOrPage);
    match (d.is_set(DESC::VALID), level == LAST_LEVEL, table_or_page) {
        (false, _, _) => Entry::Invalid,
        // Arm ARM D8.3.1: a level 3 descriptor with bit[1] == 0 is reserved and
        // behaves as invalid.
        (true, true, false) => Entry::Invalid,
        (true, true, true) | (true, false, false) => Entry::Leaf(addr),
        (true, false, true) => Entry::Table(addr),
    }
}

fn table_descriptor(next: u64) -> u64 {
    (DESC::VALID::SET + DESC::TYPE::TableOrPage + DESC::ADDR.val(next >> PAGE_SHIFT)).value
}

fn leaf_descriptor(level: usize, output: u64, attr_bits: u64) -> u64 {
    let kind = if level == LAST_LEVEL {
        DESC::TYPE::TableOrPage
    } else {
        DESC::TYPE::Block
    };
    (DESC::VALID::SET + kind + DESC::ADDR.val(output >> PAGE_SHIFT)).value | attr_bits
}

/// The attribute bits of a leaf descriptor: everything but valid, type and address.
fn leaf_attr_bits(desc: u64) -> u64 {
    desc & !(DESC::VALID::SET + DESC::TYPE::SET + DESC::ADDR::SET).mask()
}

/// One table in a walk: where it is, its level, and the input address of entry 0.
#[derive(Clone, Copy)]
struct Node {
    pa: u64,
    level: usize,
    base: u64,
}

impl Node {
    fn child(pa: u64, parent_level: usize, base: u64) -> Node {
        Node {
            pa,
            level: parent_level + 1,
            base,
        }
    }

    /// Index of the descriptor translating `addr`. For a concatenated root the
    /// index runs over all its tables.
    fn index(&self, addr: u64) -> usize {
        ((addr - self.base) >> level_shift(self.level)) as usize
    }

    fn slot_base(&self, index: usize) -> u64 {
        self.base + ((index as u64) << level_shift(self.level))
    }

    fn read(&self, mem: &mut impl TableMemory, index: usize) -> u64 {
        let (page, slot) = (index / ENTRIES_PER_TABLE, index % ENTRIES_PER_TABLE);
        mem.table(self.pa + page as u64 * PAGE_SIZE)[slot]
    }

    fn write(&self, mem: &mut impl TableMemory, index: usize, desc: u64) {
        let (page, slot) = (index / ENTRIES_PER_TABLE, index % ENTRIES_PER_TABLE);
        mem.table(self.pa + page as u64 * PAGE_SIZE)[slot] = desc;
    }

    /// The descriptors overlapping `[start, end)`, each with the part of the range
    /// it covers: `(index, slot_base, from, to)`.
    fn slots(&self, start: u64, end: u64) -> impl Iterator<Item = (usize, u64, u64, u64)> {
        let node = *self;
        let size = level_size(node.level);
        (node.index(start)..=node.index(end - 1)).map(move |index| {
            let slot = node.slot_base(index);
            (index, slot, start.max(slot), end.min(slot + size))
        })
    }
}

/// A translation table tree for one regime, rooted at a (possibly concatenated)
/// initial-level table.
/// A leaf descriptor found by [`PageTable::leaf`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// Physical address of the descriptor.
    pub entry_pa: u64,
    /// Its value.
    pub desc: u64,
    /// Bytes it maps (a page or a block).
    pub size: u64,
}

pub struct PageTable<R: Regime> {
    regime: R,
    root: u64,
}

/// A stage 2 table (VTTBR_EL2).
pub type Stage2Table = PageTable<Stage2Geometry>;
/// An EL2 stage 1 table (TTBR0_EL2).
pub type El2Table = PageTable<El2Geometry>;

impl<R: Regime> PageTable<R> {
    /// An empty table: the root (concatenated tables for stage 2 where the
    /// geometry asks for them) is allocated, contiguous and aligned to its size.
    pub fn new(regime: R, mem: &mut impl TableMemory) -> Result<Self, MapError> {
        let root = mem
            .alloc_tables(regime.root_tables())
            .ok_or(MapError::OutOfTableMemory)?;
        debug_assert!(is_aligned(root, regime.root_tables() as u64 * PAGE_SIZE));
        Ok(Self { regime, root })
    }

    /// Physical address of the root, for VTTBR_EL2 / TTBR0_EL2.
    pub fn root_pa(&self) -> u64 {
        self.root
    }

    /// The geometry this table was built for.
    pub fn regime(&self) -> &R {
        &self.regime
    }

    fn root_node(&self) -> Node {
        Node {
            pa: self.root,
            level: self.regime.start_level(),
            base: 0,
        }
    }

    /// Checks an input range and returns its end.
    fn input_range(&self, addr: u64, size: u64) -> Result<u64, MapError> {
        if size == 0 {
            return Err(MapError::EmptyRange);
        }
        if !is_aligned(addr, PAGE_SIZE) || !is_aligned(size, PAGE_SIZE) {
            return Err(MapError::Misaligned);
        }
        let end = addr.checked_add(size).ok_or(MapError::OutOfRange)?;
        if end > 1 << self.regime.input_bits() {
            return Err(MapError::OutOfRange);
        }
        Ok(end)
    }

    fn map_args(&self, addr: u64, pa: u64, size: u64) -> Result<u64, MapError> {
        let end = self.input_range(addr, size)?;
        if !is_aligned(pa, PAGE_SIZE) {
            return Err(MapError::Misaligned);
        }
        match pa.checked_add(size) {
            Some(pa_end) if pa_end <= 1 << self.regime.output_bits() => Ok(end),
            _ => Err(MapError::OutputOutOfRange),
        }
    }

    /// Maps `[addr, addr + size)` to `[pa, pa + size)` with `attrs`, using 1 GiB and
    /// 2 MiB blocks wherever input and output are both aligned to the block size
    /// and the range covers it, 4 KiB pages elsewhere.
    ///
    /// Only invalid descriptors are written, so no TLB maintenance is needed; if
    /// any address in the range is mapped already the call fails with
    /// [`MapError::AlreadyMapped`] and changes nothing. All tables are allocated
    /// before the first leaf is written, so [`MapError::OutOfTableMemory`] changes
    /// no translation either.
    pub fn map(
        &mut self,
        mem: &mut impl TableMemory,
        addr: u64,
        pa: u64,
        size: u64,
        attrs: R::Attrs,
    ) -> Result<(), MapError> {
        let end = self.map_args(addr, pa, size)?;
        let root = self.root_node();
        if let Some(mapped) = find_mapped(mem, root, addr, end) {
            return Err(MapError::AlreadyMapped { addr: mapped });
        }
        let job = MapJob {
            delta: pa.wrapping_sub(addr),
            attr_bits: R::leaf_attrs(attrs),
        };
        map_walk(mem, root, addr, end, &job, false)?;
        map_walk(mem, root, addr, end, &job, true)
    }

    /// Removes every mapping in `[addr, addr + size)`; addresses that are not
    /// mapped are skipped. Returns the TLB invalidation the caller must perform
    /// before the old output addresses are reused.
    ///
    /// A block that straddles either end of the range is first split, with
    /// break-before-make, into a table of smaller entries (built in full before the
    /// break); `bbm` is called between the break and the make. If table memory runs
    /// out for a split, nothing in the range has been unmapped yet.
    pub fn unmap(
        &mut self,
        mem: &mut impl TableMemory,
        addr: u64,
        size: u64,
        bbm: &mut impl FnMut(TlbFlush),
    ) -> Result<TlbFlush, MapError> {
        let end = self.input_range(addr, size)?;
        self.split_at(mem, addr, bbm)?;
        if end < 1 << self.regime.input_bits() {
            self.split_at(mem, end, bbm)?;
        }
        Ok(unmap_walk(mem, self.root_node(), addr, end).bounded())
    }

    /// Maps `[addr, addr + size)` to `pa` with `attrs` whatever was mapped there
    /// before, with break-before-make: the old entries are removed (splitting blocks
    /// at the ends as [`PageTable::unmap`] does), `bbm` is called with their
    /// [`TlbFlush`], then the new entries are written.
    ///
    /// On [`MapError::OutOfTableMemory`] from the new mapping the range is left
    /// unmapped.
    pub fn replace(
        &mut self,
        mem: &mut impl TableMemory,
        addr: u64,
        pa: u64,
        size: u64,
        attrs: R::Attrs,
        bbm: &mut impl FnMut(TlbFlush),
    ) -> Result<(), MapError> {
        self.map_args(addr, pa, size)?;
        let flush = self.unmap(mem, addr, size, bbm)?;
        if flush != TlbFlush::None {
            bbm(flush);
        }
        self.map(mem, addr, pa, size, attrs)
    }

    /// Walks the tables like the MMU would: the output address `addr` translates to
    /// and the mapping's attributes, or `None` if it faults.
    pub fn translate(&self, mem: &mut impl TableMemory, addr: u64) -> Option<(u64, R::Attrs)> {
        if addr >> self.regime.input_bits() != 0 {
            return None;
        }
        let mut node = self.root_node();
        loop {
            let index = node.index(addr);
            let desc = node.read(mem, index);
            let slot = node.slot_base(index);
            match classify(desc, node.level) {
                Entry::Invalid => return None,
                Entry::Table(next) => node = Node::child(next, node.level, slot),
                Entry::Leaf(output) => {
                    let attrs = R::decode_leaf_attrs(desc)?;
                    return Some((output + (addr - slot), attrs));
                }
            }
        }
    }

    /// The leaf descriptor translating `addr`: where it is (the physical
    /// address of the descriptor itself), its value and the size of what it
    /// maps; `None` if `addr` is not mapped.
    pub fn leaf(&self, mem: &mut impl TableMemory, addr: u64) -> Option<Leaf> {
        if addr >> self.regime.input_bits() != 0 {
            return None;
        }
        let mut node = self.root_node();
        loop {
            let index = node.index(addr);
            let desc = node.read(mem, index);
            let slot = node.slot_base(index);
            match classify(desc, node.level) {
                Entry::Invalid => return None,
                Entry::Table(next) => node = Node::child(next, node.level, slot),
                Entry::Leaf(_) => {
                    let (page, at) = (index / ENTRIES_PER_TABLE, index % ENTRIES_PER_TABLE);
                    return Some(Leaf {
                        entry_pa: node.pa + page as u64 * PAGE_SIZE + at as u64 * 8,
                        desc,
                        size: 1 << level_shift(node.level),
                    });
                }
            }
        }
    }

    /// Number of 4 KiB tables in the tree, the root's concatenated tables included.
    pub fn table_pages(&self, mem: &mut impl TableMemory) -> usize {
        fn count(mem: &mut impl TableMemory, node: Node, entries: usize) -> usize {
            let mut n = 0;
            for index in 0..entries {
                if let Entry::Table(next) = classify(node.read(mem, index), node.level) {
                    let child = Node::child(next, node.level, node.slot_base(index));
                    n += 1 + count(mem, child, ENTRIES_PER_TABLE);
                }
            }
            n
        }
        self.regime.root_tables() + count(mem, self.root_node(), self.root_entries())
    }

    /// Gives every table back to `mem`. Only call this once no CPU can walk the
    /// tables any more: VTTBR_EL2 / TTBR0_EL2 no longer point at them and their
    /// TLB entries were invalidated ([`TlbFlush::All`]).
    pub fn destroy(self, mem: &mut impl TableMemory) {
        fn free(mem: &mut impl TableMemory, node: Node, entries: usize) {
            for index in 0..entries {
                if let Entry::Table(next) = classify(node.read(mem, index), node.level) {
                    free(
                        mem,
                        Node::child(next, node.level, node.slot_base(index)),
                        ENTRIES_PER_TABLE,
                    );
                    mem.free_tables(next, 1);
                }
            }
        }
        free(mem, self.root_node(), self.root_entries());
        mem.free_tables(self.root, self.regime.root_tables());
    }

    fn root_entries(&self) -> usize {
        1 << (self.regime.input_bits() - level_shift(self.regime.start_level()))
    }

    /// Makes `boundary` the first address of a descriptor: if it falls inside a
    /// block, replaces the block (break-before-make) with a table of smaller
    /// entries that translate the same way.
    fn split_at(
        &mut self,
        mem: &mut impl TableMemory,
        boundary: u64,
        bbm: &mut impl FnMut(TlbFlush),
    ) -> Result<(), MapError> {
        let mut node = self.root_node();
        loop {
            let index = node.index(boundary);
            let desc = node.read(mem, index);
            let slot = node.slot_base(index);
            match classify(desc, node.level) {
                Entry::Invalid => return Ok(()),
                Entry::Table(next) => node = Node::child(next, node.level, slot),
                Entry::Leaf(_) if slot == boundary => return Ok(()),
                Entry::Leaf(output) => {
                    let block = Block {
                        output,
                        attr_bits: leaf_attr_bits(desc),
                    };
                    let table = build_split(mem, &block, node.level, slot, boundary)?;
                    node.write(mem, index, 0);
                    bbm(TlbFlush::entry(slot, node.level));
                    node.write(mem, index, table_descriptor(table));
                    return Ok(());
                }
            }
        }
    }
}

impl PageTable<Stage2Geometry> {
    /// The VTTBR_EL2 value that selects this table for 8-bit VMID `vmid`.
    pub fn vttbr_el2(&self, vmid: u8) -> u64 {
        vttbr_el2(self.root, vmid)
    }
}

impl PageTable<El2Geometry> {
    /// The TTBR0_EL2 value that selects this table.
    pub fn ttbr0_el2(&self) -> u64 {
        ttbr0_el2(self.root)
    }
}

struct MapJob {
    /// Output address minus input address.
    delta: u64,
    attr_bits: u64,
}

/// First mapped input address in `[start, end)`, if any.
fn find_mapped(mem: &mut impl TableMemory, node: Node, start: u64, end: u64) -> Option<u64> {
    for (index, slot, from, to) in node.slots(start, end) {
        match classify(node.read(mem, index), node.level) {
            Entry::Invalid => {}
            Entry::Leaf(_) => return Some(from),
            Entry::Table(next) => {
                if let Some(addr) = find_mapped(mem, Node::child(next, node.level, slot), from, to)
                {
                    return Some(addr);
                }
            }
        }
    }
    None
}

/// One pass of [`PageTable::map`]: links the tables the range needs and, when
/// `write_leaves`, writes its block and page descriptors. Both passes make the same
/// choices, so after a first pass without leaves the second cannot run out of
/// tables.
fn map_walk(
    mem: &mut impl TableMemory,
    node: Node,
    start: u64,
    end: u64,
    job: &MapJob,
    write_leaves: bool,
) -> Result<(), MapError> {
    let size = level_size(node.level);
    for (index, slot, from, to) in node.slots(start, end) {
        let entry = classify(node.read(mem, index), node.level);
        let output = from.wrapping_add(job.delta);
        // Arm ARM D8.3.1: with the 4 KiB granule (and no FEAT_LPA2) blocks exist
        // at levels 1 and 2 only.
        let leaf_fits = node.level >= 1
            && from == slot
            && to == slot + size
            && is_aligned(output, size)
            && matches!(entry, Entry::Invalid);
        if leaf_fits {
            if write_leaves {
                node.write(
                    mem,
                    index,
                    leaf_descriptor(node.level, output, job.attr_bits),
                );
            }
            continue;
        }
        let next = match entry {
            Entry::Table(next) => next,
            Entry::Leaf(_) => return Err(MapError::AlreadyMapped { addr: from }),
            Entry::Invalid => {
                let next = mem.alloc_table().ok_or(MapError::OutOfTableMemory)?;
                node.write(mem, index, table_descriptor(next));
                next
            }
        };
        map_walk(
            mem,
            Node::child(next, node.level, slot),
            from,
            to,
            job,
            write_leaves,
        )?;
    }
    Ok(())
}

/// Invalidates every leaf in `[start, end)`, which must not cut through a block.
fn unmap_walk(mem: &mut impl TableMemory, node: Node, start: u64, end: u64) -> TlbFlush {
    let mut flush = TlbFlush::None;
    for (index, slot, from, to) in node.slots(start, end) {
        match classify(node.read(mem, index), node.level) {
            Entry::Invalid => {}
            Entry::Leaf(_) => {
                debug_assert!(from == slot && to == slot + level_size(node.level));
                node.write(mem, index, 0);
                flush = flush.merge(TlbFlush::entry(slot, node.level));
            }
            Entry::Table(next) => {
                let child = Node::child(next, node.level, slot);
                flush = flush.merge(unmap_walk(mem, child, from, to));
            }
        }
    }
    flush
}

/// A block being split: where it points and its attribute bits.
struct Block {
    output: u64,
    attr_bits: u64,
}

/// A table for level `level + 1` translating exactly like `block` (a descriptor at
/// `level` for input address `base`), split further down to 4 KiB pages around
/// `boundary`. Not linked anywhere; on failure every table it allocated is given
/// back.
fn build_split(
    mem: &mut impl TableMemory,
    block: &Block,
    level: usize,
    base: u64,
    boundary: u64,
) -> Result<u64, MapError> {
    let table = mem.alloc_table().ok_or(MapError::OutOfTableMemory)?;
    let node = Node::child(table, level, base);
    let sub_size = level_size(node.level);
    for index in 0..ENTRIES_PER_TABLE {
        let slot = node.slot_base(index);
        let sub = Block {
            output: block.output + index as u64 * sub_size,
            attr_bits: block.attr_bits,
        };
        let mut entry = leaf_descriptor(node.level, sub.output, sub.attr_bits);
        if node.level < LAST_LEVEL && slot < boundary && boundary < slot + sub_size {
            match build_split(mem, &sub, node.level, slot, boundary) {
                Ok(child) => entry = table_descriptor(child),
                Err(e) => {
                    mem.free_tables(table, 1);
                    return Err(e);
                }
            }
        }
        node.write(mem, index, entry);
    }
    Ok(table)
}
