//! The system-register emulation core.
//!
//! A guest must see one consistent, faithful Arm CPU whichever physical core
//! it runs on, and cache maintenance by set/way must still leave its memory
//! coherent. Everything here is plain data in, plain data out; the arch layer
//! reads the trap, calls [`access`], and carries out the returned
//! [`Outcome`] (a value for Rt, [`HwAction`]s in order, or an UNDEF).
//!
//! # Modules
//! - [`table`]: one sorted `const` array of descriptors ([`SYSREGS`]:
//!   encoding, name, read handler, write handler, reset value) and
//!   [`access`]. Unknown encodings and forbidden directions are UNDEF; the
//!   caller logs each encoding once with [`UnknownLog`].
//! - [`id`]: the CPU model ([`VmCpuModel`]).
//! - [`cache`]: cache topology (CLIDR, CCSIDR in both formats, CCSIDR2,
//!   CSSELR, CTR) and the TID2/TID4 choice.
//! - [`setway`]: DC ISW/CSW/CISW and the VM-control-register tracking.
//! - [`pmu`]: the guest's PMUv3 (every access trapped and carried out on the
//!   hardware's counters, filtered so EL2 is never counted).
//!
//! # Wiring (what the arch layer does)
//! - The EL2 controls come from `vm::controls` (every bit explained there) and
//!   are written whole at boot and at every vCPU load. For the CPU model:
//!   HCR_EL2 TID3 (ID registers), TID1 (REVIDR/AIDR/SMIDR), TSW (set/way), and
//!   [`cache_trap`]: TID4 when FEAT_EVT exists and every core the VM runs on
//!   has the VM's CTR_EL0 in hardware ([`VmCpuModel::hw_ctr_matches`]), else
//!   TID2 (which also traps CTR_EL0: answer it from [`VmCpuModel::ctr_el0`],
//!   on the fast path if you like). TVM follows [`VcpuSysRegs::trap_vm`] / the
//!   `SetTrapVm` actions.
//! - VPIDR_EL2 = [`VmCpuModel::midr_el1`], VMPIDR_EL2 = the vCPU's MPIDR, and
//!   CPACR_EL1 = [`VmCpuModel::cpacr_el1_hw`]`(0)` at load.
//! - Hiding a feature in the ID registers does not stop a guest that uses it
//!   anyway; every hidden feature's registers trap so they reach [`access`]
//!   and UNDEF, whatever the firmware left: HCR_EL2 (TLOR, TERR, TID5, and
//!   APK/API/EnSCXT/ATA clear), HCRX_EL2 (TALLINT; every enable clear), the
//!   fine-grained traps (their `n` bits clear, the hidden features' positive
//!   bits set), MDCR_EL2 (PMU, SPE, trace filter), CPTR_EL2 (SVE, SME, trace,
//!   AMU; TCPAC where SVE/SME exist, with CPACR_EL1 emulated so ZEN/SMEN stay
//!   enabled at EL1 and the accesses reach EL2), MPAM2_EL2/MPAMHCR_EL2.
//! - [`Access::sctlr_el1`] is the guest's SCTLR_EL1 read from hardware at the
//!   trap (needed to see caches being switched while TVM traps writes).
//!
//! # The CPU model: one view, the safe one
//! At boot [`SystemCpuInfo::new`] combines the ID registers of every physical
//! CPU field by field, the way Linux's cpufeature.c does: lower-safe fields
//! take the minimum (signed fields such as FP, AdvSIMD, TGran4/64 compare as
//! signed, so 0xF "not implemented" wins), exact fields fall back to a fixed
//! safe value when cores disagree (DebugVer -> Armv8.0 debug), higher-safe
//! fields take the maximum. Fields nobody described are 0, so a new
//! architecture feature never leaks to guests unreviewed.
//!
//! Then each field's guest rule hides what Ferrovisor does not virtualize
//! yet: PMU (PMUVer, shown for a VM with a PMU by
//! [`VmCpuModel::enable_pmu`], whose registers [`pmu`] emulates), SPE (PMSVer), trace/TRBE/BRBE, AMU, MTE, MPAM, RAS,
//! SCXTNUM_ELx (CSV2 and CSV2_frac at most 1),
//! SVE and SME (ZFR0/SMFR0 read zero), pointer authentication, nested
//! virtualization (PFR0.EL2 = 0, MMFR2.NV, MMFR1.VH, the stage-2 granule
//! fields, FGT, EVT, FWB...), and features needing EL2 state not yet
//! switched (MOPS needs HCRX_EL2, WFxT needs the WFx path to decode it,
//! LORegions, ECV limited to 1). PARange shows the VM's IPA size (the stage-2
//! input range), not the host's PA size. Self-hosted debug fields (DebugVer, BRPs,
//! WRPs, CTX_CMPs, DoubleLock) are kept. EL0 and EL1 are shown AArch64-only
//! and every AArch32 ID register reads zero, which the Arm ARM allows ("In
//! an AArch64-only implementation, this register is UNKNOWN"); so do the
//! unallocated encodings of the ID space (Op0=3, Op1=0, CRn=0, CRm=1..7),
//! which TID3 also traps. PFR0.EL3 is left as the hardware says: KVM hides
//! it neither for normal guests nor (it reports EL3 = IMP) for nested ones,
//! and a guest's SMC is trapped (HCR_EL2.TSC) either way.
//!
//! Per VM, [`VmCpuModel::lower`] lowers a field from the config (named with
//! [`IdField::by_name`], e.g. `ID_AA64PFR0_EL1.GIC` for a GICv2 VM); a value
//! the field's rule would not pick over the current one (above it, for
//! lower-safe fields) is a [`ModelError`] naming the field.
//!
//! # Cache topology: three policies
//! CTR_EL0 is the same on every core: each core's effective CTR (IDC set when
//! its CLIDR needs no clean to the PoU, as Linux does) combined field by
//! field: smallest IminLine/DminLine, largest CWG/ERG unless one is 0 (0 =
//! unknown = the largest), IDC/DIC only if every core has them, L1Ip PIPT
//! only if every core is PIPT, else VIPT.
//!
//! - `Virtual` (default): one fixed topology from nothing but CTR_EL0 — split
//!   32 KiB L1 instruction and data caches, a unified 512 KiB L2 at the LoC,
//!   LoUU = LoUIS = 0 when CTR_EL0.IDC allows, lines at CTR_EL0's minimum.
//!   Nothing physical leaks and every core agrees, as with KVM/arm64's
//!   normalized topology (Linux 6.3+: a single 1-set, 1-way cache); but that
//!   shape (a unified L1 on cores with IDC = DIC = 1) is one Linux cannot
//!   match against a device tree without cache nodes — 6.1 prints "Unable to
//!   detect cache hierarchy" and shows no caches — so the shape here is the
//!   common one, with plausible sizes, and the guest's device tree describes
//!   it cache by cache (`vm::guest_fdt`), as it does for every policy.
//! - `Host`: the common topology of the cores the VM may run on. The cache
//!   kinds per level must agree (else it is a config error: use `virtual` or
//!   `explicit`); LoC/LoUU/LoUIS take the largest value; each cache gets the
//!   smallest line size, the largest associativity and enough sets to equal
//!   the largest cache of any core. Why: set/way is trapped and becomes a
//!   clean+invalidate by VA of the whole VM, so the geometry need only be
//!   one value for every vCPU and plausible; taking the largest size means a
//!   guest's set/way loop covers every line of every core, and a Linux
//!   guest's /sys/.../cache reports a real size. On the Apple M2 fixture
//!   this is cluster B's geometry for all three caches.
//! - `Explicit`: CLIDR plus one CCSIDR per listed cache, validated: Ctype
//!   encodings valid and no cache above a gap, one CCSIDR per cache and none
//!   for absent ones, lines no smaller than CTR's minimum, LoC within the
//!   levels, LoUU/LoUIS within LoC, and not "no clean needed" when IDC = 0.
//!
//! CCSIDR_EL1 is encoded on each read in the format the guest's
//! ID_AA64MMFR2_EL1.CCIDX announces (64-bit with FEAT_CCIDX, then
//! CCSIDR2_EL1 exists too; else 32-bit and CCSIDR2_EL1 is UNDEF). A CSSELR
//! selecting no cache reads [`cache::CCSIDR_NONEXISTENT`] (0): the Arm ARM
//! makes it UNKNOWN, we make it fixed. CSSELR keeps Level and InD (TnD is
//! RES0 without MTE).
//!
//! # Set/way: KVM's policy
//! Set/way operations are local to one PE, defeated by speculation and
//! ignored by system caches, so they are never executed. The first one
//! (while HCR_EL2.TVM is clear) cleans+invalidates all VM memory by VA and
//! sets TVM; every trapped VM-register write still reaches the real register
//! ([`HwAction::WriteHw`]); a write that turns SCTLR_EL1.{M,C} on or off
//! flushes again; once caches are on TVM is cleared. This is
//! `kvm_set_way_flush`/`kvm_toggle_cache` (arch/arm64/kvm/mmu.c). With
//! FEAT_S2FWB stage 2, set/way is ignored, as KVM does.
mod encoding;
pub use encoding::SysReg;

pub mod cache;
pub mod id;
pub mod mpidr;
pub mod pmu;
pub mod setway;
pub mod table;

pub use cache::{CachePolicy, CacheTopology, CacheTrap, ExplicitCaches, cache_trap};
pub use id::{
    HostCpu, IdField, IdRegs, ModelError, SveError, SystemCpuInfo, VmCpuModel, sve_cap, sve_cap_in,
    virtualisable_sve_vqs,
};
pub use mpidr::Mpidr;
pub use setway::{Actions, HwAction};
pub use table::{Access, Outcome, SYSREGS, UndefReason, UnknownLog, VcpuSysRegs, access};
