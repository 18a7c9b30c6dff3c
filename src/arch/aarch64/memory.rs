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
