//! vCPU 1, the receiver of the `ipi` row: started with PSCI CPU_ON, it brings up
//! its redistributor and CPU interface, installs the benchmark vector table, and
//! then only waits in WFI with IRQs unmasked, so each SGI is taken by
//! [`crate::irq`]'s handler right after the WFI wakes.
//!
//! PSCI (DEN0022, CPU_ON): the new vCPU enters `entry_point_address` at EL1 with
//! the MMU and caches off and `x0 = context_id`. [`bench_secondary_entry`] sets up
//! what the runtime's `_start` set up on vCPU 0, from values vCPU 0 leaves in a
//! [`BootBlock`] (`context_id` is its address): CPACR_EL1, the identity map with
//! caches on (MAIR, TCR, TTBR0, then SCTLR), a stack. Its loads bypass the caches
//! until its MMU is on, so vCPU 0 cleans the block to the PoC first (Arm ARM,
//! "Data cache maintenance instructions": DC CVAC).

use core::arch::asm;
use core::cell::UnsafeCell;
use core::mem::offset_of;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::{gic, irq};

/// PSCI CPU_ON, SMC64 calling convention (DEN0022, "Function IDs").
const PSCI_CPU_ON_64: u32 = 0xc400_0003;

/// [`STATE`]: not started, waiting for SGIs, bring-up failed.
const STATE_NOT_STARTED: u64 = 0;
const STATE_READY: u64 = 1;
const STATE_FAILED: u64 = 2;

static STATE: AtomicU64 = AtomicU64::new(STATE_NOT_STARTED);
/// vCPU 1's MPIDR_EL1, published once it runs.
static MPIDR: AtomicU64 = AtomicU64::new(0);

const STACK_SIZE: usize = 16 * 1024;

/// The register values vCPU 1 starts with (read by the entry code, MMU off).
#[repr(C, align(64))]
struct BootBlock {
    cpacr_el1: u64,
    mair_el1: u64,
    tcr_el1: u64,
    ttbr0_el1: u64,
    sctlr_el1: u64,
    stack_top: u64,
}

struct Shared<T>(UnsafeCell<T>);
// SAFETY: vCPU 0 writes the boot block only before CPU_ON and vCPU 1 only reads
// it; the stack is used by vCPU 1 alone.
unsafe impl<T> Sync for Shared<T> {}

static BOOT_BLOCK: Shared<BootBlock> = Shared(UnsafeCell::new(BootBlock {
    cpacr_el1: 0,
    mair_el1: 0,
    tcr_el1: 0,
    ttbr0_el1: 0,
    sctlr_el1: 0,
    stack_top: 0,
}));

#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);
static STACK: Shared<Stack> = Shared(UnsafeCell::new(Stack([0; STACK_SIZE])));

macro_rules! read {
    ($reg:literal) => {{
        let v: u64;
        // SAFETY: reading an EL1 system register has no side effects.
        unsafe { asm!(concat!("mrs {}, ", $reg), out(reg) v, options(nomem, nostack, preserves_flags)) };
        v
    }};
}

/// Starts vCPU 1 (MPIDR affinity `target`) and waits until it waits for SGIs.
/// Returns its MPIDR_EL1.
pub fn start(target: u64) -> Result<u64, &'static str> {
    let block = BOOT_BLOCK.0.get();
    let values = BootBlock {
        cpacr_el1: read!("cpacr_el1"),
        mair_el1: read!("mair_el1"),
        tcr_el1: read!("tcr_el1"),
        ttbr0_el1: read!("ttbr0_el1"),
        sctlr_el1: read!("sctlr_el1"),
        stack_top: STACK.0.get() as u64 + STACK_SIZE as u64,
    };
    // SAFETY: vCPU 1 is not running yet; only this function starts it.
    unsafe { block.write(values) };
    clean_to_poc(block as u64, size_of::<BootBlock>() as u64);
    let entry = bench_secondary_entry as *const () as u64;
    let ret = guest_rt::hvc_call(PSCI_CPU_ON_64, target, entry, block as u64);
    if ret != 0 {
        return Err("PSCI CPU_ON failed");
    }
    // Yield while waiting: under QEMU's single-threaded TCG a YIELD ends this
    // CPU's turn, so vCPU 1 runs.
    for _ in 0..10_000_000u64 {
        match STATE.load(Ordering::Acquire) {
            STATE_READY => return Ok(MPIDR.load(Ordering::Acquire)),
            STATE_FAILED => return Err("vCPU 1 could not bring up its GIC interface"),
            _ => relax(),
        }
    }
    Err("vCPU 1 did not come up")
}

/// YIELD: a hint that this CPU is spinning. QEMU's TCG without multi-threading
/// ends the CPU's turn at it, so the other vCPUs run (target/arm `HELPER(yield)`).
pub fn relax() {
    // SAFETY: a hint instruction.
    unsafe { asm!("yield", options(nomem, nostack, preserves_flags)) };
}

/// DC CVAC over `[addr, addr + len)`, then DSB: the bytes reach the PoC.
fn clean_to_poc(addr: u64, len: u64) {
    // CTR_EL0.DminLine [19:16]: log2 of the smallest data cache line in words.
    let line = 4u64 << ((read!("ctr_el0") >> 16) & 0xf);
    let mut va = addr & !(line - 1);
    while va < addr + len {
        // SAFETY: a clean by VA of mapped RAM changes no data.
        unsafe { asm!("dc cvac, {}", in(reg) va, options(nostack, preserves_flags)) };
        va += line;
    }
    // SAFETY: a barrier.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// vCPU 1's Rust entry, on its own stack with the MMU on.
#[unsafe(no_mangle)]
extern "C" fn bench_secondary_main() -> ! {
    irq::install();
    MPIDR.store(gic::mpidr(), Ordering::Release);
    if gic::init_this_cpu().is_err() {
        STATE.store(STATE_FAILED, Ordering::Release);
        loop {
            wfi();
        }
    }
    STATE.store(STATE_READY, Ordering::Release);
    irq::unmask();
    loop {
        wfi();
    }
}

fn wfi() {
    // SAFETY: WFI only waits (for an interrupt, taken by the installed handler).
    unsafe { asm!("wfi", options(nomem, nostack, preserves_flags)) };
}

unsafe extern "C" {
    /// The CPU_ON entry point (assembly below).
    fn bench_secondary_entry() -> !;
}

core::arch::global_asm!(
    r#"
    .pushsection .text.bench_secondary_entry, "ax"
    .balign 4
bench_secondary_entry:
    // x0 = context_id = the boot block (identity map: its VA is its PA).
    mov     x19, x0
    ldr     x1, [x19, #{cpacr}]
    msr     cpacr_el1, x1
    ldr     x1, [x19, #{mair}]
    msr     mair_el1, x1
    ldr     x1, [x19, #{tcr}]
    msr     tcr_el1, x1
    ldr     x1, [x19, #{ttbr0}]
    msr     ttbr0_el1, x1
    isb
    tlbi    vmalle1
    ic      iallu
    dsb     nsh
    isb
    ldr     x1, [x19, #{sctlr}]
    msr     sctlr_el1, x1
    isb
    ldr     x1, [x19, #{stack}]
    mov     sp, x1
    bl      bench_secondary_main
1:  wfi
    b       1b
    .popsection
"#,
    cpacr = const offset_of!(BootBlock, cpacr_el1),
    mair = const offset_of!(BootBlock, mair_el1),
    tcr = const offset_of!(BootBlock, tcr_el1),
    ttbr0 = const offset_of!(BootBlock, ttbr0_el1),
    sctlr = const offset_of!(BootBlock, sctlr_el1),
    stack = const offset_of!(BootBlock, stack_top),
);
