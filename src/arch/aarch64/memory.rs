//! Memory the hypervisor reaches by physical address (identity-mapped at EL2):
//! its heap, its own image bounds, the boot blobs and guest RAM frames.

use buddy_system_allocator::LockedHeap;
use core::cell::UnsafeCell;

/// The hypervisor's heap: a fixed area in BSS (so the heap exists before the
/// device tree is read).
const HEAP_SIZE: usize = 8 << 20;

#[repr(C, align(4096))]
struct HeapArea(UnsafeCell<[u8; HEAP_SIZE]>);
// SAFETY: the area is handed to the allocator once and only the allocator uses it.
unsafe impl Sync for HeapArea {}

static HEAP_AREA: HeapArea = HeapArea(UnsafeCell::new([0; HEAP_SIZE]));

#[global_allocator]
static HEAP: LockedHeap<32> = LockedHeap::empty();

/// Starts the heap.
pub fn init_heap() {
    let start = HEAP_AREA.0.get() as usize;
    // SAFETY: HEAP_AREA is a static region used by nothing else, given once.
    unsafe { HEAP.lock().init(start, HEAP_SIZE) };
}

/// Bytes in use on the heap (for the footprint report).
pub fn heap_used() -> usize {
    HEAP.lock().stats_alloc_actual()
}

/// `[start, end)` of the hypervisor image in physical memory, BSS and stacks included.
pub fn image_range() -> (u64, u64) {
    unsafe extern "C" {
        static __fv_image_start: u8;
        static __fv_image_end: u8;
    }
    // Taking the address of an extern static is safe; nothing is read.
    (
        core::ptr::addr_of!(__fv_image_start) as u64,
        core::ptr::addr_of!(__fv_image_end) as u64,
    )
}

/// The guard pages below every EL2 stack and emergency stack: the EL2 map
/// leaves them unmapped, so a stack overflow faults there (see `mm::stack`).
pub fn stack_guards() -> impl Iterator<Item = PhysRange> {
    let (stacks, emergency) = (super::boot::stacks(), super::boot::emergency_stacks());
    (0..stacks.count)
        .map(move |i| stacks.guard(i))
        .chain((0..emergency.count).map(move |i| emergency.guard(i)))
}

/// How many bytes of CPU `cpu`'s EL2 stack have ever been used (its
/// high-water mark, from the paint the boot code put on every stack), and the
/// stack's size.
pub fn stack_high_water(cpu: usize) -> (usize, usize) {
    let stack = super::boot::stacks().stack(cpu);
    let words = (stack.size() / 8) as usize;
    // SAFETY: the stack is identity-mapped Normal memory inside the image, 8-byte
    // aligned; it is only read, and a word the owning CPU writes meanwhile reads as
    // either its old or new value, which only moves the mark by that word.
    let slice = unsafe { core::slice::from_raw_parts(stack.start as *const u64, words) };
    (crate::mm::stack::high_water(slice), stack.size() as usize)
}

/// Logs the high-water mark of every EL2 stack a CPU has run on (at power-off,
/// and so in `make bench`): the figures the stack size is chosen from.
pub fn log_stack_use() {
    use core::fmt::Write;
    let mut line = alloc::string::String::new();
    for cpu in 0..super::boot::MAX_CPUS {
        let (used, _) = stack_high_water(cpu);
        if used > 0 {
            let _ = write!(line, " cpu{cpu} {used}");
        }
    }
    log::info!(
        "EL2 stack use (high-water, bytes):{line} of {} each",
        super::boot::STACK_SIZE
    );
}

/// A read-only view of a boot blob (the device tree, the boot bundle) that the
/// boot loader left in RAM. The range is excluded from the frame allocator, so
/// nothing else writes it for the whole run.
pub fn boot_blob(pa: u64, len: usize) -> &'static [u8] {
    // SAFETY: the caller passes a range that the device tree or loader reported
    // and that is identity-mapped Normal memory reserved from allocation.
    unsafe { core::slice::from_raw_parts(pa as *const u8, len) }
}

/// A block of physical RAM owned by exactly one user (a guest's RAM, a table).
/// Created only from frames the allocator handed out, so no alias exists.
pub struct OwnedFrames {
    pa: u64,
    len: usize,
}

impl OwnedFrames {
    /// Takes ownership of `[pa, pa + len)`, just returned by the frame allocator.
    pub fn from_allocation(pa: u64, len: usize) -> Self {
        OwnedFrames { pa, len }
    }
    pub fn pa(&self) -> u64 {
        self.pa
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The frames as bytes.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: the frames came from the allocator to this owner alone and are
        // identity-mapped Normal memory; `&mut self` makes the borrow exclusive.
        unsafe { core::slice::from_raw_parts_mut(self.pa as *mut u8, self.len) }
    }
}

use crate::mm::pagetable::{ENTRIES_PER_TABLE, TableMemory};
use crate::mm::{FrameAllocator, PAGE_SIZE, PhysRange};
use crate::sync::Mutex;

static FRAMES: Mutex<Option<FrameAllocator>> = Mutex::new(None);

/// Hands the free RAM to the frame allocator.
pub fn init_frames(free: &[PhysRange]) {
    *FRAMES.lock() = Some(FrameAllocator::new(free));
}

/// Free bytes left in the frame allocator.
pub fn free_bytes() -> u64 {
    FRAMES.lock().as_ref().map(|f| f.free_bytes()).unwrap_or(0)
}

/// `pages` zeroed, contiguous frames aligned to `align_pages` frames.
pub fn alloc_frames(pages: usize, align_pages: usize) -> Option<OwnedFrames> {
    let f = alloc_frames_unzeroed(pages, align_pages)?;
    super::ram::zero_range(f.pa(), f.len() as u64);
    Some(f)
}

/// `pages` contiguous frames aligned to `align_pages` frames, holding whatever
/// they held before. Only for memory the caller overwrites entirely before
/// anything reads it: guest RAM, which `Vm::load` zeroes (to the point of
/// coherency, as a guest with its caches off needs) on every load.
pub fn alloc_frames_unzeroed(pages: usize, align_pages: usize) -> Option<OwnedFrames> {
    let pa = FRAMES.lock().as_mut()?.alloc(pages, align_pages)?;
    Some(OwnedFrames::from_allocation(pa, pages * PAGE_SIZE as usize))
}

/// Gives frames back.
pub fn free_frames(frames: OwnedFrames) {
    if let Some(a) = FRAMES.lock().as_mut() {
        a.free(frames.pa(), frames.len() / PAGE_SIZE as usize);
    }
}

/// Translation tables in identity-mapped frames.
pub struct HwTableMemory;

impl TableMemory for HwTableMemory {
    fn alloc_tables(&mut self, pages: usize) -> Option<u64> {
        let f = alloc_frames(pages, pages)?;
        Some(f.pa())
    }

    fn free_tables(&mut self, pa: u64, pages: usize) {
        free_frames(OwnedFrames::from_allocation(pa, pages * PAGE_SIZE as usize));
    }

    fn table(&mut self, pa: u64) -> &mut [u64; ENTRIES_PER_TABLE] {
        // SAFETY: `pa` is a table this type allocated (the builder only passes
        // addresses it got from `alloc_tables` or read from its own descriptors);
        // it is identity-mapped Normal memory, 4 KiB aligned, and only the builder,
        // which holds `&mut self`, touches it.
        unsafe { &mut *(pa as *mut [u64; ENTRIES_PER_TABLE]) }
    }
}

/// Writes one descriptor of a stage-2 table that [`HwTableMemory`] handed
/// out (the lazy RAM mapping of `vm::ram`), as a single 64-bit store so a
/// table walker on another CPU sees the old or the new value, never a mix.
pub fn write_table_entry(entry_pa: u64, desc: u64) {
    debug_assert!(entry_pa.is_multiple_of(8));
    // SAFETY: `entry_pa` is a descriptor inside a table from
    // `HwTableMemory::alloc_tables` (the VM recorded it from its own stage-2
    // walk when it was built); that memory is identity-mapped Normal memory at
    // EL2 and lives as long as the VM. The VM's RAM lock serializes writers.
    unsafe { core::ptr::write_volatile(entry_pa as *mut u64, desc) }
}

/// `[start, end)` of the hypervisor's code, then of its read-only data.
pub fn image_sections() -> ((u64, u64), (u64, u64)) {
    unsafe extern "C" {
        static __fv_image_start: u8;
        static __fv_text_end: u8;
        static __fv_rodata_end: u8;
    }
    let start = core::ptr::addr_of!(__fv_image_start) as u64;
    let text_end = (core::ptr::addr_of!(__fv_text_end) as u64).next_multiple_of(PAGE_SIZE);
    let ro_end = core::ptr::addr_of!(__fv_rodata_end) as u64;
    ((start, text_end), (text_end, ro_end))
}

/// Tables for the EL2 identity map come from this pool in BSS, which the early
/// map already covers as Normal memory (RAM elsewhere is not yet mapped Normal
/// when the final map is built).
const EL2_POOL_PAGES: usize = 128;

#[repr(C, align(4096))]
struct El2Pool(UnsafeCell<[[u64; ENTRIES_PER_TABLE]; EL2_POOL_PAGES]>);
// SAFETY: the pool is used only by El2TableMemory on the boot CPU before any
// other CPU runs.
unsafe impl Sync for El2Pool {}

static EL2_POOL: El2Pool = El2Pool(UnsafeCell::new([[0; ENTRIES_PER_TABLE]; EL2_POOL_PAGES]));
static EL2_POOL_NEXT: Mutex<usize> = Mutex::new(0);

/// Table memory for the EL2 map (a bump allocator over the BSS pool).
pub struct El2TableMemory;

impl TableMemory for El2TableMemory {
    fn alloc_tables(&mut self, pages: usize) -> Option<u64> {
        let mut next = EL2_POOL_NEXT.lock();
        let first = next.next_multiple_of(pages);
        if first + pages > EL2_POOL_PAGES {
            return None;
        }
        *next = first + pages;
        Some(EL2_POOL.0.get() as u64 + (first as u64) * PAGE_SIZE)
    }

    fn free_tables(&mut self, _pa: u64, _pages: usize) {
        // The EL2 map only grows; a freed pool table is simply not reused.
    }

    fn table(&mut self, pa: u64) -> &mut [u64; ENTRIES_PER_TABLE] {
        // SAFETY: `pa` is a page of EL2_POOL handed out by alloc_tables (the
        // builder passes back only addresses it got from here); BSS is
        // identity-mapped Normal memory and only the builder touches it.
        unsafe { &mut *(pa as *mut [u64; ENTRIES_PER_TABLE]) }
    }
}

/// Switches the EL2 MMU to the table at `root_pa` (same TCR_EL2 geometry as the
/// early map: 39-bit VA, level-1 root).
/// The root is also published for secondary CPUs, which read it with their
/// MMU and caches off: it is cleaned to the point of coherency.
pub fn switch_el2_table(root_pa: u64) {
    unsafe extern "C" {
        static mut __fv_el2_root: u64;
    }
    let slot = core::ptr::addr_of_mut!(__fv_el2_root);
    // SAFETY: `__fv_el2_root` is a u64 in .data that only the boot CPU writes,
    // once, before any secondary CPU starts.
    unsafe { slot.write_volatile(root_pa) };
    super::regs::dcache_clean_invalidate(slot as u64, 8);
    super::regs::dsb_ish();
    super::regs::write_ttbr0_el2(root_pa);
    super::regs::isb();
    super::regs::tlbi_el2_all();
}

impl crate::vm::machine::GuestRam for OwnedFrames {
    fn pa(&self) -> u64 {
        self.pa
    }
    fn len(&self) -> u64 {
        self.len as u64
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        OwnedFrames::bytes_mut(self)
    }
    fn zero_to_poc(&mut self) {
        super::ram::zero_range_to_poc(self.pa, self.len as u64);
    }
    fn zero_range_to_poc(&mut self, offset: u64, len: u64) {
        super::ram::zero_range_to_poc(self.pa + offset, len);
    }
    fn copy_to_poc(&mut self, offset: u64, bytes: &[u8]) {
        super::ram::copy_to_poc(self.pa + offset, bytes);
    }
}

/// Guest RAM and stage-2 tables from the frame allocator.
pub struct VmFrames(HwTableMemory);

impl VmFrames {
    pub fn new() -> Self {
        VmFrames(HwTableMemory)
    }
}

impl Default for VmFrames {
    fn default() -> Self {
        Self::new()
    }
}

impl crate::vm::machine::VmMemory for VmFrames {
    type Tables = HwTableMemory;
    fn alloc_ram(
        &mut self,
        bytes: u64,
        align: u64,
    ) -> Option<alloc::boxed::Box<dyn crate::vm::machine::GuestRam>> {
        let pages = bytes.div_ceil(PAGE_SIZE) as usize;
        // Not zeroed here: `Vm::load` zeroes it to the point of coherency.
        let frames = alloc_frames_unzeroed(pages, (align / PAGE_SIZE).max(1) as usize)?;
        Some(alloc::boxed::Box::new(frames))
    }
    fn tables(&mut self) -> &mut HwTableMemory {
        &mut self.0
    }
}
