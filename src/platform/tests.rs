//! Host tests against real QEMU 10.0.2 device trees and hand-written ones.
//!
//! Fixtures in tests/fixtures (regenerate with these commands, then compact with
//! `dtc -I dtb -O dtb` because QEMU pads its blob to 1 MiB; /chosen rng-seed and
//! kaslr-seed differ on every dump):
//! - virt-gicv3-max-4cpu.dtb: `qemu-system-aarch64 -M virt,virtualization=on,gic-version=3,dumpdtb=F -cpu max -smp 4 -m 1G`
//! - virt-gicv2-a57-2cpu.dtb: `qemu-system-aarch64 -M virt,virtualization=on,gic-version=2,dumpdtb=F -cpu cortex-a57 -smp 2 -m 512M`
//! - virt-gicv3-initrd-bootargs.dtb: `qemu-system-aarch64 -M virt,virtualization=on,gic-version=3,dumpdtb=F -cpu max -smp 2 -m 2G
//!   -kernel <4 KiB file> -initrd <1000-byte file> -append "console=ttyAMA0 earlycon root=/dev/ram"`
//! - board-gic400-spintable.dtb, broken-no-memory.dtb, broken-no-cpus.dtb: `dtc -I dts -O dtb` of the .dts beside them.

extern crate std;

use super::*;
use alloc::vec;
use alloc::vec::Vec;

const VIRT_V3: &[u8] = include_bytes!("../../tests/fixtures/virt-gicv3-max-4cpu.dtb");
const VIRT_V2: &[u8] = include_bytes!("../../tests/fixtures/virt-gicv2-a57-2cpu.dtb");
const VIRT_INITRD: &[u8] = include_bytes!("../../tests/fixtures/virt-gicv3-initrd-bootargs.dtb");
const BOARD: &[u8] = include_bytes!("../../tests/fixtures/board-gic400-spintable.dtb");
const NO_MEMORY: &[u8] = include_bytes!("../../tests/fixtures/broken-no-memory.dtb");
const NO_CPUS: &[u8] = include_bytes!("../../tests/fixtures/broken-no-cpus.dtb");

fn parse(dtb: &[u8]) -> Platform {
    match Platform::parse(dtb) {
        Ok(p) => p,
        Err(e) => panic!("parse failed: {e}"),
    }
}

fn device<'p>(p: &'p Platform, path: &str) -> &'p DeviceNode {
    p.devices
        .iter()
        .find(|d| d.path == path)
        .unwrap_or_else(|| panic!("no device {path}"))
}

#[test]
fn mem_range_helpers() {
    let r = MemRange::new(0x1000, 0x1000);
    assert_eq!(r.end(), 0x2000);
    assert!(r.contains(0x1000) && r.contains(0x1fff));
    assert!(!r.contains(0x2000) && !r.contains(0xfff));
    assert!(r.overlaps(&MemRange::new(0x1fff, 1)));
    assert!(!r.overlaps(&MemRange::new(0x2000, 0x10)));
    assert!(!r.overlaps(&MemRange::new(0x1800, 0)));
    assert!(r.contains_range(&MemRange::new(0x1800, 0x800)));
    assert!(!r.contains_range(&MemRange::new(0x1800, 0x801)));
    assert_eq!(MemRange::new(u64::MAX - 1, 8).end(), u64::MAX);
}

#[test]
fn qemu_virt_gicv3_memory_and_cpus() {
    let p = parse(VIRT_V3);
    assert_eq!(p.model.as_deref(), Some("linux,dummy-virt"));
    assert_eq!(p.memory, vec![MemRange::new(0x4000_0000, 0x4000_0000)]);
    assert!(p.reserved.is_empty());
    let mpidrs: Vec<u64> = p.cpus.iter().map(|c| c.mpidr).collect();
    assert_eq!(mpidrs, vec![0, 1, 2, 3]);
    assert!(
        p.cpus
            .iter()
            .all(|c| c.enable_method.as_deref() == Some("psci") && c.cpu_release_addr.is_none())
    );
    assert!(p.is_ram(&MemRange::new(0x4000_0000, 0x1000)));
    assert!(!p.is_ram(&MemRange::new(0x7fff_f000, 0x2000)));
}

#[test]
fn qemu_virt_gicv3_gic() {
    let gic = parse(VIRT_V3).gic.expect("gic");
    assert_eq!(gic.version, GicVersion::V3);
    assert_eq!(gic.gicd, MemRange::new(0x0800_0000, 0x1_0000));
    // QEMU 10 describes the whole redistributor space up to the UART in one region.
    assert_eq!(gic.gicr, vec![MemRange::new(0x080A_0000, 0xF6_0000)]);
    assert_eq!((gic.gicc, gic.gich, gic.gicv), (None, None, None));
    assert_eq!(gic.maintenance_intid, Some(25));
    assert_eq!(gic.maintenance_ppi(), Some(9));
    assert!(gic.phandle.is_some());
}

#[test]
fn qemu_virt_gicv3_uart_timer_psci() {
    let p = parse(VIRT_V3);
    let uart = p.uart.expect("uart");
    assert_eq!(uart.path, "/pl011@9000000");
    assert_eq!((uart.base, uart.size), (0x0900_0000, 0x1000));
    assert_eq!(uart.irq, Some(33)); // SPI 1
    assert_eq!(uart.compatible, UartCompatible::Pl011);
    let t = p.timer.expect("timer");
    assert_eq!(
        (t.secure_phys, t.nonsecure_phys, t.virt, t.hyp_phys),
        (29, 30, 27, 26)
    );
    assert_eq!(t.hyp_virt, Some(28)); // -cpu max has FEAT_VHE
    assert!(t.always_on);
    let psci = p.psci.expect("psci");
    assert_eq!(psci.method, Conduit::Smc); // EL3-less virtualization=on: QEMU's PSCI is on SMC
    assert_eq!(
        psci.compatible,
        vec!["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]
    );
    assert!(psci.is_v0_2_or_later());
    assert_eq!(psci.v0_1_ids.cpu_on, Some(0xc400_0003));
    assert_eq!((p.initrd, p.bootargs), (None, None));
}

#[test]
fn qemu_virt_gicv3_devices() {
    let p = parse(VIRT_V3);
    let virtio = device(&p, "/virtio_mmio@a000000");
    assert_eq!(virtio.regs, vec![MemRange::new(0x0a00_0000, 0x200)]);
    assert_eq!(virtio.irqs, vec![48]); // SPI 16
    assert_eq!(virtio.compatible.as_deref(), Some("virtio,mmio"));
    assert!(virtio.enabled);
    assert_eq!(
        p.devices
            .iter()
            .filter(|d| d.compatible.as_deref() == Some("virtio,mmio"))
            .count(),
        32
    );
    // The ITS is a child of the GIC node, reached through its empty `ranges`.
    assert_eq!(
        device(&p, "/intc@8000000/its@8080000").regs,
        vec![MemRange::new(0x0808_0000, 0x2_0000)]
    );
    let intc = device(&p, "/intc@8000000");
    assert_eq!(intc.irqs, vec![25]);
    assert_eq!(
        device(&p, "/pcie@10000000").regs,
        vec![MemRange::new(0x40_1000_0000, 0x1000_0000)]
    );
    assert_eq!(
        device(&p, "/flash@0").regs,
        vec![
            MemRange::new(0, 0x400_0000),
            MemRange::new(0x400_0000, 0x400_0000)
        ]
    );
    // Interrupt specifiers for the PL061 GPIO controller are not GIC INTIDs.
    assert!(p.devices.iter().all(|d| !d.path.starts_with("/gpio-keys")));
    // No reg, no device: memory, cpus, pmu, timer, psci, platform-bus.
    for path in [
        "/memory@40000000",
        "/cpus/cpu@0",
        "/pmu",
        "/timer",
        "/psci",
        "/platform-bus@c000000",
    ] {
        assert!(
            p.devices.iter().all(|d| d.path != path),
            "{path} listed as a device"
        );
    }
    assert_eq!(
        p.device_at(0x0900_0fff).map(|d| d.path.as_str()),
        Some("/pl011@9000000")
    );
    assert!(p.device_at(0x4000_0000).is_none());
}

#[test]
fn qemu_virt_gicv2() {
    let p = parse(VIRT_V2);
    assert_eq!(p.memory, vec![MemRange::new(0x4000_0000, 0x2000_0000)]);
    assert_eq!(p.cpus.len(), 2);
    let gic = p.gic.expect("gic");
    assert_eq!(gic.version, GicVersion::V2);
    assert_eq!(gic.gicd, MemRange::new(0x0800_0000, 0x1_0000));
    assert!(gic.gicr.is_empty());
    assert_eq!(gic.gicc, Some(MemRange::new(0x0801_0000, 0x1_0000)));
    assert_eq!(gic.gich, Some(MemRange::new(0x0803_0000, 0x1_0000)));
    assert_eq!(gic.gicv, Some(MemRange::new(0x0804_0000, 0x1_0000)));
    assert_eq!(gic.maintenance_intid, Some(25));
    // GICv2 PPI flags carry a CPU mask (0x304); the INTIDs are the same.
    let t = p.timer.expect("timer");
    assert_eq!(
        (
            t.secure_phys,
            t.nonsecure_phys,
            t.virt,
            t.hyp_phys,
            t.hyp_virt
        ),
        (29, 30, 27, 26, None)
    );
    assert_eq!(p.uart.expect("uart").irq, Some(33));
    assert_eq!(p.psci.expect("psci").method, Conduit::Smc);
}

#[test]
fn qemu_virt_initrd_and_bootargs() {
    let p = parse(VIRT_INITRD);
    assert_eq!(p.memory, vec![MemRange::new(0x4000_0000, 0x8000_0000)]);
    // 64-bit cells; the 1000-byte initrd was placed at 0x4800_0000.
    assert_eq!(p.initrd, Some(MemRange::new(0x4800_0000, 1000)));
    assert_eq!(
        p.bootargs.as_deref(),
        Some("console=ttyAMA0 earlycon root=/dev/ram")
    );
}

#[test]
fn board_memory_reserved_cpus() {
    let p = parse(BOARD);
    assert_eq!(p.model.as_deref(), Some("Ferrovisor test board"));
    // Two ranges in one node, root #size-cells = 1.
    assert_eq!(
        p.memory,
        vec![
            MemRange::new(0, 0x3b40_0000),
            MemRange::new(0x4000_0000, 0x8000_0000)
        ]
    );
    // /memreserve/ first, then /reserved-memory children with reg (linux,cma has none).
    assert_eq!(
        p.reserved,
        vec![
            MemRange::new(0, 0x1000),
            MemRange::new(0x1f00_0000, 0x10_0000)
        ]
    );
    // /cpus #address-cells = 2: Aff3 in the upper cell.
    assert_eq!(
        p.cpus,
        vec![
            CpuNode {
                mpidr: 0,
                enable_method: Some("spin-table".into()),
                cpu_release_addr: Some(0xd8)
            },
            CpuNode {
                mpidr: 0x1_0000_0001,
                enable_method: Some("spin-table".into()),
                cpu_release_addr: Some(0xe0)
            },
        ]
    );
}

#[test]
fn board_translates_gic_and_uart_through_simple_bus_ranges() {
    let p = parse(BOARD);
    let gic = p.gic.expect("gic");
    assert_eq!(gic.version, GicVersion::V2);
    assert_eq!(gic.gicd, MemRange::new(0xff84_1000, 0x1000));
    assert_eq!(gic.gicc, Some(MemRange::new(0xff84_2000, 0x2000)));
    assert_eq!(gic.gich, Some(MemRange::new(0xff84_4000, 0x2000)));
    assert_eq!(gic.gicv, Some(MemRange::new(0xff84_6000, 0x2000)));
    assert_eq!(gic.maintenance_intid, Some(25));
    // stdout-path "serial0:115200n8" goes through /aliases and drops the options.
    let uart = p.uart.expect("uart");
    assert_eq!(uart.path, "/soc/serial@7e201000");
    assert_eq!(
        (uart.base, uart.size, uart.irq),
        (0xfe20_1000, 0x200, Some(153))
    );
    assert_eq!(uart.compatible, UartCompatible::Pl011);
}

#[test]
fn board_devices_timer_psci_chosen() {
    let p = parse(BOARD);
    let i2c = device(&p, "/soc/i2c@7e804000");
    assert_eq!(
        (i2c.regs.clone(), i2c.irqs.clone()),
        (vec![MemRange::new(0xfe80_4000, 0x1000)], vec![149])
    );
    // On an I2C bus (#size-cells 0, no ranges) or a bus without ranges: not MMIO.
    assert!(
        p.devices
            .iter()
            .all(|d| !d.path.contains("eeprom") && !d.path.contains("hidden"))
    );
    let aux = device(&p, "/soc/serial@7e215040");
    assert!(!aux.enabled);
    assert_eq!(aux.compatible.as_deref(), Some("brcm,bcm2835-aux-uart"));
    assert!(
        p.devices
            .iter()
            .all(|d| !d.path.starts_with("/reserved-memory"))
    );
    let t = p.timer.expect("timer");
    assert_eq!(
        (
            t.secure_phys,
            t.nonsecure_phys,
            t.virt,
            t.hyp_phys,
            t.hyp_virt
        ),
        (29, 30, 27, 26, None)
    );
    let psci = p.psci.expect("psci");
    assert_eq!(psci.method, Conduit::Hvc);
    assert!(!psci.is_v0_2_or_later());
    assert_eq!(psci.v0_1_ids.cpu_on, Some(0x8400_0003));
    assert_eq!(psci.v0_1_ids.migrate, None);
    // One-cell initrd properties.
    assert_eq!(p.initrd, Some(MemRange::new(0x270_0000, 0x10_0000)));
    assert_eq!(p.bootargs.as_deref(), Some("console=ttyAMA0,115200"));
}

#[test]
fn missing_memory_or_cpus_is_an_error() {
    assert_eq!(Platform::parse(NO_MEMORY), Err(PlatformError::NoMemory));
    assert_eq!(Platform::parse(NO_CPUS), Err(PlatformError::NoCpus));
    let msg = alloc::format!("{}", PlatformError::NoMemory);
    assert!(msg.contains("/memory"), "{msg}");
}

#[test]
fn total_size_from_header() {
    assert_eq!(fdt_total_size(&VIRT_V3[..40]), Ok(VIRT_V3.len()));
    assert_eq!(
        fdt_total_size(&VIRT_V3[..39]),
        Err(PlatformError::Truncated {
            needed: 40,
            available: 39
        })
    );
    let mut bad = VIRT_V3[..40].to_vec();
    bad[0] = 0;
    assert_eq!(
        fdt_total_size(&bad),
        Err(PlatformError::BadMagic(0x000d_feed))
    );
    let mut huge = VIRT_V3[..40].to_vec();
    huge[4..8].copy_from_slice(&0x0100_0000u32.to_be_bytes());
    assert_eq!(
        fdt_total_size(&huge),
        Err(PlatformError::BadTotalSize(0x0100_0000))
    );
    let mut tiny = VIRT_V3[..40].to_vec();
    tiny[4..8].copy_from_slice(&39u32.to_be_bytes());
    assert_eq!(fdt_total_size(&tiny), Err(PlatformError::BadTotalSize(39)));
    let mut old = VIRT_V3[..40].to_vec();
    old[20..24].copy_from_slice(&16u32.to_be_bytes());
    assert!(matches!(
        fdt_total_size(&old),
        Err(PlatformError::UnsupportedVersion { version: 16, .. })
    ));
    let msg = alloc::format!("{}", fdt_total_size(&bad).unwrap_err());
    assert!(msg.contains("magic") && msg.contains("0xd00dfeed"), "{msg}");
}

#[test]
fn truncated_blob_is_an_error() {
    let short = &VIRT_V3[..VIRT_V3.len() - 1];
    assert_eq!(
        Platform::parse(short),
        Err(PlatformError::Truncated {
            needed: VIRT_V3.len(),
            available: VIRT_V3.len() - 1
        })
    );
    // Trailing bytes past totalsize are ignored.
    let mut long = VIRT_V3.to_vec();
    long.extend_from_slice(&[0xff; 64]);
    assert_eq!(Platform::parse(&long), Platform::parse(VIRT_V3));
}

fn be32_at(b: &[u8], off: usize) -> usize {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]]) as usize
}

/// Inserts `FDT_NOP` tokens at the given offsets into the structure block and fixes up
/// the header (the structure block precedes the strings block in dtc's output).
fn with_nops(dtb: &[u8], struct_offsets: &[usize]) -> Vec<u8> {
    let off_struct = be32_at(dtb, 8);
    let mut out = dtb.to_vec();
    for &o in struct_offsets.iter().rev() {
        let at = off_struct + o;
        out.splice(at..at, 4u32.to_be_bytes());
    }
    let grow = 4 * struct_offsets.len();
    for (field, extra) in [(1, grow), (3, grow), (9, grow)] {
        let v = be32_at(&out, field * 4) + extra;
        out[field * 4..field * 4 + 4].copy_from_slice(&(v as u32).to_be_bytes());
    }
    assert!(
        be32_at(&out, 12) > off_struct,
        "fixture has strings after structure"
    );
    out
}

#[test]
fn nop_tokens_are_skipped() {
    let off_struct = be32_at(BOARD, 8);
    // Root: BEGIN_NODE + empty name = 8 bytes; then the first property.
    let first_prop_len = be32_at(BOARD, off_struct + 12);
    let second_prop = 8 + 12 + first_prop_len.div_ceil(4) * 4;
    let nopped = with_nops(BOARD, &[8, second_prop, second_prop]);
    assert_ne!(nopped.len(), BOARD.len());
    assert_eq!(Platform::parse(&nopped), Platform::parse(BOARD));
}

#[test]
fn structure_errors_are_reported() {
    // Claim the structure block is 8 bytes long: it ends inside the root node.
    let mut cut = VIRT_V3.to_vec();
    cut[36..40].copy_from_slice(&8u32.to_be_bytes());
    assert!(matches!(
        Platform::parse(&cut),
        Err(PlatformError::Malformed { .. })
    ));
    // An unknown token where the root's first property should be.
    let mut tok = VIRT_V3.to_vec();
    let at = be32_at(&tok, 8) + 8;
    tok[at..at + 4].copy_from_slice(&7u32.to_be_bytes());
    let err = Platform::parse(&tok).unwrap_err();
    assert!(
        alloc::format!("{err}").contains("unknown structure block token"),
        "{err}"
    );
}

/// The `fdt` crate panics on some malformed input; `Platform::parse` must not.
/// Corrupts bytes of every fixture (mostly in the structure and strings blocks,
/// sometimes small numbers that look like lengths and tokens) and truncates it, and
/// checks what still parses with [`crate::fuzzing::device_tree`].
#[test]
fn corrupted_blobs_never_panic() {
    let fixtures = [VIRT_V3, VIRT_V2, VIRT_INITRD, BOARD, NO_MEMORY, NO_CPUS];
    let mut rng = crate::testing::Rng::new(0x9e37_79b9_7f4a_7c15);
    let mut parsed_ok = 0;
    for (i, fixture) in fixtures.iter().enumerate() {
        for round in 0..600 {
            let mut b = fixture.to_vec();
            for _ in 0..1 + rng.below(4) {
                let at = if rng.below(4) == 0 {
                    rng.below(40)
                } else {
                    40 + rng.below(b.len() - 40)
                };
                b[at] = match rng.below(3) {
                    0 => rng.next() as u8,
                    1 => rng.below(12) as u8,
                    _ => b[at] ^ (1 << rng.below(8)),
                };
            }
            if round % 10 == 0 {
                let keep = rng.below(b.len());
                b.truncate(keep);
            }
            let result = std::panic::catch_unwind(|| crate::fuzzing::device_tree(&b));
            match result {
                Ok(ok) => parsed_ok += usize::from(ok),
                Err(_) => panic!("fixture {i} round {round}: a panic (above)"),
            }
        }
    }
    // Many single-byte changes (in property values) still parse: the test exercises
    // the decoders, not only the container checks.
    assert!(parsed_ok > 400, "only {parsed_ok} corrupted blobs parsed");
}

/// A random but well-formed tree: random cell counts (including 0 and huge ones),
/// `reg` and `ranges` of random lengths, buses nested in buses, interrupts for the GIC
/// and for other parents, `interrupts-extended`, the DMA properties, an initrd
/// anywhere. Parsed with the invariants of [`crate::fuzzing::device_tree`].
fn random_tree(rng: &mut crate::testing::Rng) -> Vec<u8> {
    fn cells(rng: &mut crate::testing::Rng) -> u32 {
        *rng.pick(&[0, 1, 1, 2, 2, 2, 3, u32::MAX])
    }
    fn words(rng: &mut crate::testing::Rng) -> Vec<u32> {
        let n = rng.below(13);
        (0..n)
            .map(|_| {
                if rng.one_in(2) {
                    rng.below(64) as u32
                } else {
                    rng.interesting() as u32
                }
            })
            .collect()
    }
    fn node(rng: &mut crate::testing::Rng, w: &mut vm_fdt::FdtWriter, depth: usize, i: usize) {
        let names = ["dev", "bus", "usb", "serial", "pcie", "virtio_mmio", "gpio"];
        let name = alloc::format!("{}@{i:x}", rng.pick(&names));
        let n = w.begin_node(&name).unwrap();
        if rng.one_in(2) {
            w.property_array_u32("reg", &words(rng)).unwrap();
        }
        if rng.one_in(3) {
            w.property_u32("#address-cells", cells(rng)).unwrap();
            w.property_u32("#size-cells", cells(rng)).unwrap();
        }
        if rng.one_in(3) {
            if rng.one_in(4) {
                w.property_null("ranges").unwrap();
            } else {
                w.property_array_u32("ranges", &words(rng)).unwrap();
            }
        }
        if rng.one_in(2) {
            let spec: Vec<u32> = (0..3 * (1 + rng.below(3)))
                .map(|k| {
                    if k % 3 == 0 {
                        rng.below(4) as u32
                    } else {
                        rng.interesting() as u32
                    }
                })
                .collect();
            w.property_array_u32("interrupts", &spec).unwrap();
        }
        if rng.one_in(5) {
            let mut spec = words(rng);
            if rng.one_in(2) {
                spec.splice(0..0, [1, 0, rng.below(40) as u32, 4]);
            }
            w.property_array_u32("interrupts-extended", &spec).unwrap();
        }
        if rng.one_in(6) {
            w.property_u32("interrupt-parent", rng.below(4) as u32)
                .unwrap();
        }
        if rng.one_in(5) {
            w.property_u32("phandle", 2 + rng.below(3) as u32).unwrap();
            w.property_u32("#interrupt-cells", cells(rng)).unwrap();
        }
        if rng.one_in(4) {
            let (prop, _) = *rng.pick(DMA_PROPERTIES);
            w.property_null(prop).unwrap();
        }
        if rng.one_in(4) {
            let compatible = *rng.pick(&[
                "arm,pl011",
                "virtio,mmio",
                "arm,pl061",
                "simple-bus",
                "arm,gic-v3",
                "arm,armv8-timer",
            ]);
            w.property_string("compatible", compatible).unwrap();
        }
        if rng.one_in(8) {
            w.property_string("status", "disabled").unwrap();
        }
        if depth < 3 {
            for k in 0..rng.below(3) {
                node(rng, w, depth + 1, k);
            }
        }
        w.end_node(n).unwrap();
    }
    let initrd = rng.one_in(2).then(|| {
        let start = if rng.one_in(2) {
            0x4000_0000 + rng.below(1 << 30) as u64
        } else {
            rng.interesting()
        };
        let end = if rng.one_in(2) {
            start.wrapping_add(rng.below(1 << 20) as u64)
        } else {
            rng.interesting()
        };
        (start, end)
    });
    let stdout = rng.one_in(4);
    tree(
        |w| {
            for i in 0..rng.below(6) {
                node(rng, w, 0, i);
            }
        },
        |w| {
            if let Some((start, end)) = initrd {
                w.property_u64("linux,initrd-start", start).unwrap();
                w.property_u64("linux,initrd-end", end).unwrap();
            }
            if stdout {
                w.property_string("stdout-path", "/serial@0:115200")
                    .unwrap();
            }
        },
    )
}

#[test]
fn random_trees_never_panic() {
    let mut rng = crate::testing::Rng::new(11);
    let (mut parsed, mut devices) = (0, 0);
    for _ in 0..800 {
        let blob = random_tree(&mut rng);
        if crate::fuzzing::device_tree(&blob) {
            parsed += 1;
            devices += Platform::parse(&blob).unwrap().devices.len();
        }
    }
    // Most trees parse (some are refused: an initrd outside RAM, a second GIC with a
    // bad `reg`, ...), with devices whose registers were translated, so the checks
    // after parsing run too.
    assert!(
        parsed > 300 && devices > 300,
        "{parsed} trees parsed, {devices} devices"
    );
}

#[test]
fn summary_names_what_was_found() {
    let lines = parse(VIRT_V3).summary();
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    assert!(has("cpu3: mpidr 0x3 enable-method psci"), "{lines:#?}");
    assert!(
        has("memory: [0x40000000..0x80000000) (1024 MiB)"),
        "{lines:#?}"
    );
    assert!(has("gic: V3 gicd [0x8000000..0x8010000)"), "{lines:#?}");
    assert!(has("gic: gicr [0x80a0000..0x9000000)"), "{lines:#?}");
    assert!(has("gic: maintenance interrupt INTID 25"), "{lines:#?}");
    assert!(
        has("uart: /pl011@9000000 at [0x9000000..0x9001000) Pl011 irq Some(33)"),
        "{lines:#?}"
    );
    assert!(
        has("timer: INTIDs secure-phys 29 phys 30 virt 27 hyp-phys 26"),
        "{lines:#?}"
    );
    assert!(has("psci: method smc"), "{lines:#?}");
    let board = parse(BOARD).summary();
    assert!(
        board
            .iter()
            .any(|l| l == "gic: gicv [0xff846000..0xff848000)"),
        "{board:#?}"
    );
    assert!(
        board
            .iter()
            .any(|l| l == "psci: method hvc compatible [\"arm,psci\"]"),
        "{board:#?}"
    );
}

/// A minimal tree built in the test: root (2 address, 2 size cells), one CPU, 1 GiB
/// of RAM at 0x4000_0000, a GICv3 with phandle 1, then what `extra` writes under the
/// root and what `chosen` writes in /chosen.
fn tree(
    extra: impl FnOnce(&mut vm_fdt::FdtWriter),
    chosen: impl FnOnce(&mut vm_fdt::FdtWriter),
) -> Vec<u8> {
    let mut w = vm_fdt::FdtWriter::new().unwrap();
    let root = w.begin_node("").unwrap();
    w.property_u32("#address-cells", 2).unwrap();
    w.property_u32("#size-cells", 2).unwrap();
    w.property_u32("interrupt-parent", 1).unwrap();
    let cpus = w.begin_node("cpus").unwrap();
    w.property_u32("#address-cells", 1).unwrap();
    w.property_u32("#size-cells", 0).unwrap();
    let cpu = w.begin_node("cpu@0").unwrap();
    w.property_string("device_type", "cpu").unwrap();
    w.property_u32("reg", 0).unwrap();
    w.end_node(cpu).unwrap();
    w.end_node(cpus).unwrap();
    let mem = w.begin_node("memory@40000000").unwrap();
    w.property_string("device_type", "memory").unwrap();
    w.property_array_u64("reg", &[0x4000_0000, 0x4000_0000])
        .unwrap();
    w.end_node(mem).unwrap();
    let gic = w.begin_node("intc@8000000").unwrap();
    w.property_string("compatible", "arm,gic-v3").unwrap();
    w.property_null("interrupt-controller").unwrap();
    w.property_u32("#interrupt-cells", 3).unwrap();
    w.property_array_u64("reg", &[0x0800_0000, 0x1_0000, 0x080a_0000, 0xf6_0000])
        .unwrap();
    w.property_array_u32("interrupts", &[1, 9, 4]).unwrap();
    w.property_u32("phandle", 1).unwrap();
    w.end_node(gic).unwrap();
    extra(&mut w);
    let c = w.begin_node("chosen").unwrap();
    chosen(&mut w);
    w.end_node(c).unwrap();
    w.end_node(root).unwrap();
    w.finish().unwrap()
}

/// A device node `name` with one 4 KiB `reg` at `base`, SPI `spi`, and whatever
/// `props` adds.
fn device_node(
    w: &mut vm_fdt::FdtWriter,
    name: &str,
    base: u64,
    spi: u32,
    props: impl FnOnce(&mut vm_fdt::FdtWriter),
) {
    let n = w.begin_node(&alloc::format!("{name}@{base:x}")).unwrap();
    w.property_array_u64("reg", &[base, 0x1000]).unwrap();
    w.property_array_u32("interrupts", &[0, spi, 4]).unwrap();
    props(w);
    w.end_node(n).unwrap();
}

#[test]
fn initrd_outside_ram_is_an_error() {
    let with_initrd = |start: u64, end: u64| {
        tree(
            |_| {},
            |w| {
                w.property_u64("linux,initrd-start", start).unwrap();
                w.property_u64("linux,initrd-end", end).unwrap();
            },
        )
    };
    let p = parse(&with_initrd(0x4800_0000, 0x4800_1000));
    assert_eq!(p.initrd, Some(MemRange::new(0x4800_0000, 0x1000)));
    // Wholly outside RAM, straddling its end, and at the top of the address space.
    for (start, end) in [
        (0x1000_0000, 0x1000_1000),
        (0x7fff_f000, 0x8000_1000),
        (u64::MAX - 0xfff, u64::MAX),
    ] {
        let err = Platform::parse(&with_initrd(start, end)).unwrap_err();
        assert_eq!(
            err,
            PlatformError::BadProperty {
                path: "/chosen".into(),
                property: "linux,initrd-start",
                reason: "the initrd does not lie within one /memory range",
            },
            "{start:#x}..{end:#x}"
        );
    }
}

#[test]
fn huge_cell_counts_are_refused_not_added_up() {
    // A bus with #address-cells = 0xffffffff and a non-empty `ranges`: the cell counts
    // of its `ranges` entries used to be summed before being checked.
    for (address, size) in [(u32::MAX, 1), (1, u32::MAX), (u32::MAX, u32::MAX)] {
        let dtb = tree(
            |w| {
                let bus = w.begin_node("bus@1000000").unwrap();
                w.property_string("compatible", "simple-bus").unwrap();
                w.property_u32("#address-cells", address).unwrap();
                w.property_u32("#size-cells", size).unwrap();
                w.property_array_u32("ranges", &[0, 0, 0x0100_0000, 0, 0x1000, 7, 7])
                    .unwrap();
                device_node(w, "uart", 0, 5, |_| {});
                w.end_node(bus).unwrap();
            },
            |_| {},
        );
        let p = parse(&dtb);
        // The bus's children are not in the CPU's address space: no device for them.
        assert!(
            p.devices
                .iter()
                .all(|d| !d.path.starts_with("/bus@1000000/")),
            "{:?}",
            p.devices
        );
    }
}

#[test]
fn bus_masters_in_qemu_virt() {
    let p = parse(VIRT_V3);
    let master = |path: &str| device(&p, path).bus_master;
    assert_eq!(
        master("/virtio_mmio@a000000"),
        Some(BusMaster::Property {
            name: "dma-coherent",
            meaning: "it does DMA, coherently with the CPUs' caches"
        })
    );
    assert!(master("/fw-cfg@9020000").is_some());
    assert!(master("/pcie@10000000").is_some());
    for slave in [
        "/pl061@9030000",
        "/pl031@9010000",
        "/flash@0",
        "/pl011@9000000",
    ] {
        assert_eq!(master(slave), None, "{slave}");
    }
    // Every virtio transport is one.
    assert!(
        p.devices
            .iter()
            .filter(|d| d.compatible.as_deref() == Some("virtio,mmio"))
            .all(|d| d.bus_master.is_some())
    );
}

#[test]
fn bus_master_rules() {
    let dtb = tree(
        |w| {
            device_node(w, "plain", 0x1000_0000, 1, |_| {});
            for (i, &(prop, _)) in DMA_PROPERTIES.iter().enumerate() {
                device_node(w, "dev", 0x1100_0000 + i as u64 * 0x1000, 2, |w| {
                    if prop == "msi-controller"
                        || prop == "dma-coherent"
                        || prop == "dma-noncoherent"
                    {
                        w.property_null(prop).unwrap();
                    } else {
                        w.property_u32(prop, 1).unwrap();
                    }
                });
            }
            device_node(w, "host", 0x1200_0000, 3, |w| {
                w.property_string("device_type", "pci").unwrap();
            });
            for (i, &(compatible, _)) in BUS_MASTER_COMPATIBLES.iter().enumerate() {
                device_node(w, "thing", 0x1300_0000 + i as u64 * 0x1000, 4, |w| {
                    // Second in the list: every compatible string counts.
                    w.property_string_list(
                        "compatible",
                        vec!["vendor,thing".into(), compatible.into()],
                    )
                    .unwrap();
                });
            }
            for (i, name) in BUS_MASTER_NAMES.iter().enumerate() {
                device_node(w, name, 0x1400_0000 + i as u64 * 0x1000, 5, |_| {});
            }
        },
        |_| {},
    );
    let p = parse(&dtb);
    let at = |base: u64| {
        p.devices
            .iter()
            .find(|d| d.regs.first().is_some_and(|r| r.base == base))
            .unwrap_or_else(|| panic!("no device at {base:#x}"))
            .bus_master
    };
    assert_eq!(at(0x1000_0000), None);
    for (i, &(name, meaning)) in DMA_PROPERTIES.iter().enumerate() {
        assert_eq!(
            at(0x1100_0000 + i as u64 * 0x1000),
            Some(BusMaster::Property { name, meaning })
        );
    }
    assert_eq!(at(0x1200_0000), Some(BusMaster::PciHostBridge));
    for (i, &(compatible, meaning)) in BUS_MASTER_COMPATIBLES.iter().enumerate() {
        assert_eq!(
            at(0x1300_0000 + i as u64 * 0x1000),
            Some(BusMaster::Compatible {
                compatible,
                meaning
            })
        );
    }
    for (i, &name) in BUS_MASTER_NAMES.iter().enumerate() {
        assert_eq!(
            at(0x1400_0000 + i as u64 * 0x1000),
            Some(BusMaster::GenericName(name))
        );
    }
    let text = alloc::format!("{}", at(0x1200_0000).unwrap());
    assert!(text.contains("PCI host bridge"), "{text}");
}
