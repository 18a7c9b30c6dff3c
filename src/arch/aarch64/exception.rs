//! The EL2 vector table and the world switch.
//!
//! A guest exception lands in a lower-EL vector, which stores the guest's
//! general registers into the loaded vCPU's [`GuestRegs`] (its address is in
//! this CPU's `PerCpu::frame`), then calls [`fv_guest_exit`] on this CPU's
//! stack. That runs the run loop (`vm::pcpu::Pcpu::on_exit`), which returns
//! the registers of the vCPU to enter next — usually the same — and the vector
//! restores them and `eret`s. Between two exits the EL2 stack is empty: the
//! hypervisor keeps no frame across a guest run. The first entry on a CPU is
//! [`enter_first`], which resets the stack and takes the same way out.
//!
//! Everything else of a vCPU (EL1 system registers, timers, GIC, FP) stays in
//! the hardware while it runs; the run loop moves it only when another vCPU
//! takes the CPU.

use core::arch::global_asm;

use crate::vm::pcpu::ExitCause;
use crate::vm::vcpu::GuestRegs;

global_asm!(
    r#"
.macro GUEST_VECTOR code
    .balign 0x80
    stp     x0, x1, [sp, #-16]!
    mov     x1, #\code
    b       __fv_guest_exit
.endm

.macro EL2_VECTOR kind
    .balign 0x80
    mov     x0, #\kind
    b       __fv_el2_fault
.endm

.section .text.vectors, "ax"
.balign 0x800
.global __fv_vectors
__fv_vectors:
    // Current EL with SP_EL0: never used by Ferrovisor.
    EL2_VECTOR 0
    EL2_VECTOR 1
    EL2_VECTOR 2
    EL2_VECTOR 3
    // Current EL with SP_ELx: a fault in the hypervisor itself.
    EL2_VECTOR 4
    EL2_VECTOR 5
    EL2_VECTOR 6
    EL2_VECTOR 7
    // Lower EL, AArch64: the guest. Synchronous exceptions first try the fast
    // paths.
    .balign 0x80
    stp     x0, x1, [sp, #-16]!
    b       __fv_guest_sync
    GUEST_VECTOR 1
    GUEST_VECTOR 2
    GUEST_VECTOR 3
    // Lower EL, AArch32 (a 32-bit EL0 under a 64-bit guest kernel).
    GUEST_VECTOR 0
    GUEST_VECTOR 1
    GUEST_VECTOR 2
    GUEST_VECTOR 3

// Fast paths, answered with only x0-x2 touched (guest x0/x1 on the stack)
// (a third, set/way operations while HCR_EL2.TVM is set, is described at 50):
// - HVC #0 with SMCCC_VERSION (0x8000_0000) in w0: x0 = 1.1, x1-x3 = 0, as the
//   full path (psci::handle) answers it.
// - MRS Xt, CTR_EL0 trapped by HCR_EL2.TID2: Xt = the VM's CTR_EL0 (PerCpu), as
//   the sysreg table answers it; PC steps over the MRS.
// Anything else takes the full exit.
__fv_guest_sync:
    mrs     x0, esr_el2
    lsr     x1, x0, #26
    cmp     x1, #0x16
    b.eq    10f
    cmp     x1, #0x18
    b.eq    20f
1:  mov     x1, #0
    b       __fv_guest_exit

10: tst     x0, #0xffff             // HVC immediate must be 0
    b.ne    1b
    ldr     x1, [sp]                // guest x0
    mov     w0, #0x80000000
    cmp     w1, w0
    b.ne    1b
    mov     x0, #1
    movk    x0, #1, lsl #16
    mov     x1, xzr
    mov     x2, xzr
    mov     x3, xzr
    add     sp, sp, #16
    eret

    // ISS of MRS CTR_EL0 without Rt: Op0=3 Op2=1 Op1=3 CRn=0 CRm=0 read.
20: bic     x1, x0, #0x3e0
    and     x1, x1, #0x1ffffff
    sub     x1, x1, #0x32c, lsl #12
    cmp     x1, #1
    b.ne    50f
    str     x2, [sp, #-16]!
    ubfx    x1, x0, #5, #5          // Rt
    mrs     x0, tpidr_el2
    ldr     x0, [x0, #{ctr_off}]
    adr     x2, 30f
    add     x2, x2, x1, lsl #3
    br      x2
30: str     x0, [sp, #16]           // x0 (stacked)
    b       40f
    str     x0, [sp, #24]           // x1 (stacked)
    b       40f
    str     x0, [sp]                // x2 (stacked)
    b       40f
    .irp n, 3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30
    mov     x\n, x0
    b       40f
    .endr
    b       40f                     // XZR: the value is discarded
    nop
40: mrs     x1, elr_el2
    add     x1, x1, #4
    msr     elr_el2, x1
    ldr     x2, [sp], #16
    ldp     x0, x1, [sp], #16
    eret

    // DC ISW/CSW/CISW (Op0=1 Op1=0 CRn=7 CRm=6/10/14 Op2=2, Direction 0)
    // while HCR_EL2.TVM is set: the run loop has cleaned the VM's RAM and
    // watches its VM registers for the caches going on, so until then a
    // set/way operation has nothing left to do (sysreg::setway, as the full
    // path answers it); PC steps over it. CRm bits [3:2] (ISS bits [4:3]) are
    // masked: CRm 0b0010 with these fields is not an allocated encoding, so
    // it never traps here.
50: add     x1, x1, #0x32c, lsl #12 // the ISS without Rt again
    bic     x1, x1, #0x18
    mov     x0, #0x1c04
    movk    x0, #0x14, lsl #16
    cmp     x1, x0
    b.ne    1b
    mrs     x0, hcr_el2
    tbz     x0, #26, 1b             // TVM
    mrs     x1, elr_el2
    add     x1, x1, #4
    msr     elr_el2, x1
    ldp     x0, x1, [sp], #16
    eret

// An exception taken from EL2 itself: a hypervisor bug, reported and never
// returned from. Its stack may be the one that overflowed (SP in the guard
// page), so nothing is pushed before SP is moved to this CPU's emergency stack.
// x0 = vector kind; x0-x10 are clobbered (x29, the frame pointer, is kept).
__fv_el2_fault:
    mov     x4, sp
    mov     x6, x30
    // The CPU's logical index from its PerCpu (TPIDR_EL2; 0 until it is set).
    mrs     x5, tpidr_el2
    cbz     x5, 1f
    ldr     x5, [x5, #{percpu_index}]
1:  cmp     x5, #{max_cpus}
    csel    x5, x5, xzr, lo
    adrp    x7, __fv_emergency_stacks
    add     x7, x7, :lo12:__fv_emergency_stacks
    ldr     x8, ={emergency_slot}
    madd    x9, x8, x5, x7          // this CPU's slot: [guard | emergency stack]
    add     x10, x9, x8             // its top
    // Already on it (reporting faulted in turn): stop here, quietly.
    cmp     x4, x9
    b.lo    2f
    cmp     x4, x10
    b.hi    2f
3:  wfe
    b       3b
2:  mov     sp, x10
    mrs     x1, esr_el2
    mrs     x2, elr_el2
    mrs     x3, far_el2
    bl      fv_el2_exception        // (kind, esr, elr, far, sp, cpu, lr): never returns
    b       3b

// The full exit. x1 = exit code; guest x0/x1 are on the stack.
__fv_guest_exit:
    mrs     x0, tpidr_el2
    ldr     x0, [x0, #{frame_off}]
    stp     x2, x3, [x0, #16]
    stp     x4, x5, [x0, #32]
    stp     x6, x7, [x0, #48]
    stp     x8, x9, [x0, #64]
    stp     x10, x11, [x0, #80]
    stp     x12, x13, [x0, #96]
    stp     x14, x15, [x0, #112]
    stp     x16, x17, [x0, #128]
    stp     x18, x19, [x0, #144]
    stp     x20, x21, [x0, #160]
    stp     x22, x23, [x0, #176]
    stp     x24, x25, [x0, #192]
    stp     x26, x27, [x0, #208]
    stp     x28, x29, [x0, #224]
    str     x30, [x0, #240]
    ldp     x2, x3, [sp], #16
    stp     x2, x3, [x0, #0]
    mrs     x2, elr_el2
    mrs     x3, spsr_el2
    stp     x2, x3, [x0, #248]
    mov     x0, x1
    bl      fv_guest_exit
    // x0 = the registers to enter.
__fv_resume:
    ldp     x1, x2, [x0, #248]
    msr     elr_el2, x1
    msr     spsr_el2, x2
    ldp     x2, x3, [x0, #16]
    ldp     x4, x5, [x0, #32]
    ldp     x6, x7, [x0, #48]
    ldp     x8, x9, [x0, #64]
    ldp     x10, x11, [x0, #80]
    ldp     x12, x13, [x0, #96]
    ldp     x14, x15, [x0, #112]
    ldp     x16, x17, [x0, #128]
    ldp     x18, x19, [x0, #144]
    ldp     x20, x21, [x0, #160]
    ldp     x22, x23, [x0, #176]
    ldp     x24, x25, [x0, #192]
    ldp     x26, x27, [x0, #208]
    ldp     x28, x29, [x0, #224]
    ldr     x30, [x0, #240]
    ldp     x0, x1, [x0, #0]
    eret
    dsb     nsh
    isb

// x0 = the registers to enter, x1 = this CPU's stack top. Never returns.
.section .text
.global __fv_enter_first
__fv_enter_first:
    mov     sp, x1
    b       __fv_resume
"#,
    ctr_off = const super::percpu::GUEST_CTR_EL0_OFFSET,
    frame_off = const super::percpu::FRAME_OFFSET,
    percpu_index = const core::mem::offset_of!(super::percpu::PerCpu, index),
    max_cpus = const super::boot::MAX_CPUS,
    emergency_slot = const super::boot::GUARD_SIZE + super::boot::EMERGENCY_STACK_SIZE,
);

unsafe extern "C" {
    fn __fv_enter_first(regs: *mut GuestRegs, stack_top: u64) -> !;
}

/// Enters the guest whose registers are `regs` for the first time on this
/// CPU, on an empty stack: whatever called this is abandoned (it must hold
/// no lock and own nothing that must be dropped).
///
/// # Safety
/// `regs` points at a vCPU's GuestRegs that lives for the whole run and that
/// only this CPU uses; `stack_top` is the top of this CPU's own stack.
pub unsafe fn enter_first(regs: *mut GuestRegs, stack_top: u64) -> ! {
    super::percpu::set_frame(regs);
    // SAFETY: the caller's guarantees above. The assembly loads the registers
    // and erets; every later exit comes back through the vector on that stack.
    unsafe { __fv_enter_first(regs, stack_top) }
}

/// The full exit, called by the vector with the guest's registers saved in
/// the loaded vCPU's frame. Returns the registers of the vCPU to enter.
#[unsafe(no_mangle)]
extern "C" fn fv_guest_exit(code: u64) -> *mut GuestRegs {
    let cause = ExitCause::from_code(code);
    if crate::vm::stats::enabled() {
        // SAFETY: the frame is the loaded vCPU's, just written by the vector;
        // nothing else holds a reference to it while this CPU handles the exit.
        crate::vm::stats::exit(cause, unsafe { &*super::percpu::frame() });
    }
    let regs = super::percpu::with_pcpu(|p| p.on_exit(&mut super::hw::ArchHw, cause));
    super::percpu::set_frame(regs);
    regs
}

/// An exception taken from EL2 itself: a hypervisor bug. Runs on this CPU's
/// emergency stack; reports and stops. A fault on a stack's guard page is named
/// as the stack overflow it is.
#[unsafe(no_mangle)]
extern "C" fn fv_el2_exception(
    kind: u64,
    esr: u64,
    elr: u64,
    far: u64,
    sp: u64,
    cpu: u64,
    lr: u64,
) -> ! {
    use crate::mm::stack::{StackFault, classify_el2_fault};
    if let StackFault::Overflow { cpu: owner } =
        classify_el2_fault(&super::boot::stacks(), esr, far, sp)
    {
        // Each CPU runs only on its own stack, so the guard's owner is this CPU;
        // say so if not. No allocation here: the overflow may have struck inside
        // the allocator, with its lock held.
        let odd = if owner as u64 == cpu {
            ""
        } else {
            " (on another CPU's guard page)"
        };
        // The image is linked at 0 and runs where it was loaded: the ELF's
        // address of the PC is its offset from the image's start.
        let elf_pc = elr.wrapping_sub(super::memory::image_range().0);
        super::console::write_fatal(format_args!(
            "\nferrovisor: stack overflow on cpu{cpu}: PC {elr:#x} (ELF {elf_pc:#x}) LR {lr:#x} SP {sp:#x} FAR_EL2 {far:#x} ESR_EL2 {esr:#x}{odd}\n\
             Ferrovisor stopped on this CPU. Its source line: addr2line -f -C -i -e <the image's ELF, build/ferrovisor*.elf> {elf_pc:#x}\n"
        ));
        loop {
            super::regs::wfe();
        }
    }
    panic!(
        "exception in the hypervisor (vector {kind}) on cpu{cpu}: ESR_EL2={esr:#x} ELR_EL2={elr:#x} (ELF {:#x}) FAR_EL2={far:#x} SP={sp:#x} LR={lr:#x}",
        elr.wrapping_sub(super::memory::image_range().0)
    );
}
