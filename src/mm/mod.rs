//! Memory management: physical ranges, the page-frame allocator and the
//! translation-table builder for stage 2 and the EL2 stage 1.
pub mod bulk;
pub mod frame;
pub mod pagetable;
pub mod region;
pub mod stack;

pub use frame::FrameAllocator;
pub use region::{PAGE_SIZE, PhysRange};
