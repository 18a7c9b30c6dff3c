//! Secondary CPUs: starting one with PSCI CPU_ON and getting it to Rust.
//!
//! PSCI (DEN0022, "CPU_ON"): the new CPU enters `entry_point_address` in AArch64
//! EL1 with the MMU and caches off and `x0 = context_id`. Its stack, vector table
//! and translation regime are its own to set up, so the entry code here does for it
//! what [`crate::boot`]'s `_start` did for CPU 0, with the register values the
//! starting CPU had when it called [`Secondary::start`] (its boot parameters,
//! whose address is `context_id`):
//! 1. `CPACR_EL1` and `VBAR_EL1` ([`Vectors`]);
//! 2. `MAIR_EL1`, `TCR_EL1`, `TTBR0_EL1`, then `SCTLR_EL1`: the same identity map
//!    with caches on, so from then on the CPUs share memory coherently (every CPU
//!    maps RAM Normal write-back inner shareable);
//! 3. the stack of its [`Secondary`], then the guest's `entry(arg)`.
//!
//! Until its MMU is on the new CPU's loads are Device accesses that bypass the
//! caches, so the starting CPU cleans the boot parameters to the PoC before CPU_ON
//! (Arm ARM D7.5.10: data written through a cacheable alias is visible to
//! non-cacheable accesses only after a clean to the PoC). The stack needs no such
//! care: only the new CPU touches it, after its MMU is on.

use core::arch::asm;
use core::cell::UnsafeCell;
use core::mem::offset_of;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::smccc::{PSCI_CPU_OFF, PSCI_CPU_ON_64, PSCI_RET_ALREADY_ON, hvc_call};

/// Reads an EL1 system register by name.
macro_rules! read {
    ($reg:literal) => {{
        let v: u64;
        // SAFETY: reading an EL1 system register has no side effects.
        unsafe { asm!(concat!("mrs {}, ", $reg), out(reg) v, options(nomem, nostack, preserves_flags)) };
        v
    }};
}

/// The stack each [`Secondary`] gives its CPU.
pub const STACK_SIZE: usize = 16 * 1024;

/// The vector table a started CPU installs (`VBAR_EL1`) before its MMU is on.
#[derive(Clone, Copy)]
pub enum Vectors {
    /// The runtime's table ([`crate::exception`]): expected exceptions, the
    /// [`crate::set_irq_handler`] hook, and a `FAIL:` report for anything else.
    Runtime,
    /// A table of the guest's own: the symbol of a 2 KiB aligned block of 16
    /// entries of 0x80 bytes (Arm ARM D1.3.1, VBAR_EL1), each valid code.
    Own(unsafe extern "C" fn()),
}

/// What the entry code reads, with the MMU off, before it calls Rust. The field
/// offsets are used by the assembly below.
#[repr(C, align(64))]
struct BootParams {
    cpacr_el1: u64,
    vbar_el1: u64,
    mair_el1: u64,
    tcr_el1: u64,
    ttbr0_el1: u64,
    sctlr_el1: u64,
    stack_top: u64,
    /// Read by [`secondary_main`] with the MMU on. An `Option` so that a
    /// [`Secondary`] not yet started is all zeros and goes in BSS.
    entry: Option<fn(usize) -> !>,
    arg: usize,
}

#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);

/// One secondary CPU's boot parameters and stack. A guest declares one `static`
/// per CPU it starts (in BSS: [`Secondary::new`] is all zeros) and starts it once.
pub struct Secondary {
    boot: UnsafeCell<BootParams>,
    stack: UnsafeCell<Stack>,
    started: AtomicBool,
}

// SAFETY: `start` writes `boot` only after winning `started` (so once, before
// CPU_ON, from one CPU); the started CPU only reads `boot`. `stack` is used by the
// started CPU alone, as its stack.
unsafe impl Sync for Secondary {}

impl Default for Secondary {
    fn default() -> Self {
        Self::new()
    }
}

impl Secondary {
    /// A CPU not started yet: no boot parameters, an unused stack.
    pub const fn new() -> Self {
        Self {
            boot: UnsafeCell::new(BootParams {
                cpacr_el1: 0,
                vbar_el1: 0,
                mair_el1: 0,
                tcr_el1: 0,
                ttbr0_el1: 0,
                sctlr_el1: 0,
                stack_top: 0,
                entry: None,
                arg: 0,
            }),
            stack: UnsafeCell::new(Stack([0; STACK_SIZE])),
            started: AtomicBool::new(false),
        }
    }

    /// Starts the CPU whose MPIDR_EL1 affinity is `mpidr` with PSCI CPU_ON (over
    /// HVC): it sets up `CPACR_EL1`, `vectors`, the calling CPU's translation regime
    /// and this `Secondary`'s stack, then runs `entry(arg)`.
    ///
    /// Returns CPU_ON's error code (DEN0022 table 5.2, a negative value) if it
    /// failed. A `Secondary` starts one CPU, once: a second call returns
    /// `ALREADY_ON` without calling PSCI, since its stack may be in use.
    pub fn start(
        &'static self,
        mpidr: u64,
        vectors: Vectors,
        entry: fn(usize) -> !,
        arg: usize,
    ) -> Result<(), i64> {
        if self.started.swap(true, Ordering::SeqCst) {
            return Err(PSCI_RET_ALREADY_ON);
        }
        let vbar_el1 = match vectors {
            Vectors::Runtime => __guest_rt_vectors as *const () as u64,
            Vectors::Own(table) => table as *const () as u64,
        };
        let params = BootParams {
            cpacr_el1: read!("cpacr_el1"),
            vbar_el1,
            mair_el1: read!("mair_el1"),
            tcr_el1: read!("tcr_el1"),
            ttbr0_el1: read!("ttbr0_el1"),
            sctlr_el1: read!("sctlr_el1"),
            stack_top: self.stack.get() as u64 + STACK_SIZE as u64,
            entry: Some(entry),
            arg,
        };
        let boot = self.boot.get();
        // SAFETY: `started` was false, so no CPU runs from this `Secondary` and no
        // other call writes `boot`.
        unsafe { boot.write(params) };
        clean_to_poc(boot as u64, size_of::<BootParams>() as u64);
        let entry_point = __guest_rt_secondary_entry as *const () as u64;
        match hvc_call(PSCI_CPU_ON_64, mpidr, entry_point, boot as u64) {
            0 => Ok(()),
            err => Err(err as i64),
        }
    }
}

/// PSCI CPU_OFF (over HVC) for the calling CPU. CPU_OFF returns only when it
/// fails; the CPU then stays parked in WFI.
pub fn cpu_off() -> ! {
    hvc_call(PSCI_CPU_OFF, 0, 0, 0);
    park()
}

fn park() -> ! {
    loop {
        // SAFETY: WFI only waits; it has no memory effects.
        unsafe { asm!("wfi", options(nomem, nostack)) };
    }
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

/// The started CPU's Rust entry, on its own stack with the MMU on.
extern "C" fn secondary_main(boot: *const BootParams) -> ! {
    // SAFETY: `start` wrote the parameters before CPU_ON and never again.
    match unsafe { ((*boot).entry, (*boot).arg) } {
        (Some(entry), arg) => entry(arg),
        (None, _) => park(),
    }
}

unsafe extern "C" {
    /// The CPU_ON entry point (assembly below).
    fn __guest_rt_secondary_entry() -> !;
    /// The runtime's vector table ([`crate::exception`]).
    fn __guest_rt_vectors();
}

core::arch::global_asm!(
    r#"
    .pushsection .text.__guest_rt_secondary_entry, "ax"
    .balign 4
__guest_rt_secondary_entry:
    // x0 = context_id = the boot parameters (identity map: their VA is their PA).
    mov     x19, x0
    ldr     x1, [x19, #{cpacr}]
    msr     cpacr_el1, x1
    ldr     x1, [x19, #{vbar}]
    msr     vbar_el1, x1
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
    mov     x0, x19
    bl      {main}
1:  wfi
    b       1b
    .popsection
"#,
    cpacr = const offset_of!(BootParams, cpacr_el1),
    vbar = const offset_of!(BootParams, vbar_el1),
    mair = const offset_of!(BootParams, mair_el1),
    tcr = const offset_of!(BootParams, tcr_el1),
    ttbr0 = const offset_of!(BootParams, ttbr0_el1),
    sctlr = const offset_of!(BootParams, sctlr_el1),
    stack = const offset_of!(BootParams, stack_top),
    main = sym secondary_main,
);
