//! Host tests of the table builder. Register and descriptor values are checked with
//! bit positions taken from the Arm ARM (DDI 0487), independently of the bitfield
//! definitions the code uses.

use super::fake::FakeTableMemory;
use super::stage2::{s2_inconsistent_sl, s2_invalid_sl};
use super::*;
use alloc::vec::Vec;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

const GUEST_IPA: u64 = 0x4000_0000;
const GUEST_PA: u64 = 0x8000_0000;

/// Bits `[hi:lo]` of `value`.
fn bits(value: u64, hi: u32, lo: u32) -> u64 {
    (value >> lo) & ((1u64 << (hi - lo + 1)) - 1)
}

fn stage2(pa_range: u8, mem: &mut FakeTableMemory) -> Stage2Table {
    PageTable::new(Stage2Geometry::from_pa_range(pa_range).unwrap(), mem).unwrap()
}

/// The leaf descriptor translating `addr` and its level, walking the raw tables.
fn leaf_of<R: Regime>(pt: &PageTable<R>, mem: &mut FakeTableMemory, addr: u64) -> (u64, usize) {
    let mut node = pt.root_node();
    loop {
        let index = node.index(addr);
        let desc = node.read(mem, index);
        match classify(desc, node.level) {
            Entry::Invalid => panic!("{addr:#x} is not mapped"),
            Entry::Table(next) => node = Node::child(next, node.level, node.slot_base(index)),
            Entry::Leaf(_) => return (desc, node.level),
        }
    }
}

/// A `bbm` closure that records what it was asked to invalidate.
fn recorder(log: &mut Vec<TlbFlush>) -> impl FnMut(TlbFlush) + '_ {
    move |f| log.push(f)
}

fn no_bbm(f: TlbFlush) {
    panic!("unexpected break-before-make flush {f:?}");
}

// ---- stage 2 geometry and VTCR_EL2 / VTTBR_EL2 ----

#[test]
fn vtcr_for_36_bit_pa_range() {
    let g = Stage2Geometry::from_pa_range(0b0001).unwrap();
    assert_eq!((g.ipa_bits(), g.start_level(), g.root_tables()), (36, 1, 1));
    let vtcr = g.vtcr_el2();
    assert_eq!(bits(vtcr, 5, 0), 64 - 36, "T0SZ");
    assert_eq!(
        bits(vtcr, 7, 6),
        0b01,
        "SL0: 4 KiB granule, start at level 1"
    );
    assert_eq!(
        bits(vtcr, 9, 8),
        0b01,
        "IRGN0: Write-Back Read/Write-Allocate"
    );
    assert_eq!(
        bits(vtcr, 11, 10),
        0b01,
        "ORGN0: Write-Back Read/Write-Allocate"
    );
    assert_eq!(bits(vtcr, 13, 12), 0b11, "SH0: Inner Shareable");
    assert_eq!(bits(vtcr, 15, 14), 0b00, "TG0: 4 KiB");
    assert_eq!(bits(vtcr, 18, 16), 0b001, "PS: 36 bits");
    assert_eq!(bits(vtcr, 19, 19), 0, "VS: 8-bit VMID");
    assert_eq!(bits(vtcr, 22, 21), 0, "HA, HD off");
    assert_eq!(bits(vtcr, 31, 31), 1, "RES1");
    assert_eq!(vtcr, 0x8001_355c);
}

#[test]
fn vtcr_for_40_bit_pa_range_concatenates_two_level_1_tables() {
    let g = Stage2Geometry::from_pa_range(0b0010).unwrap();
    assert_eq!((g.ipa_bits(), g.start_level(), g.root_tables()), (40, 1, 2));
    let vtcr = g.vtcr_el2();
    assert_eq!(bits(vtcr, 5, 0), 24, "T0SZ");
    assert_eq!(bits(vtcr, 7, 6), 0b01, "SL0: level 1");
    assert_eq!(bits(vtcr, 18, 16), 0b010, "PS: 40 bits");
    assert_eq!(
        bits(vtcr, 15, 8),
        0b0011_0101,
        "TG0 4K, SH0 IS, ORGN0/IRGN0 WBWA"
    );
    assert_eq!(bits(vtcr, 31, 31), 1);
}

#[test]
fn vtcr_for_48_bit_pa_range_starts_at_level_0() {
    let g = Stage2Geometry::from_pa_range(0b0101).unwrap();
    assert_eq!((g.ipa_bits(), g.start_level(), g.root_tables()), (48, 0, 1));
    let vtcr = g.vtcr_el2();
    assert_eq!(bits(vtcr, 5, 0), 16, "T0SZ");
    assert_eq!(
        bits(vtcr, 7, 6),
        0b10,
        "SL0: 4 KiB granule, start at level 0"
    );
    assert_eq!(bits(vtcr, 18, 16), 0b101, "PS: 48 bits");
    assert_eq!(bits(vtcr, 31, 31), 1);
}

#[test]
fn geometry_for_every_pa_range_passes_the_arm_arm_checks() {
    // (PARange, IPA bits, start level, root tables, PS)
    let expected = [
        (0b0000, 32, 2, 4, 0b000),
        (0b0001, 36, 1, 1, 0b001),
        (0b0010, 40, 1, 2, 0b010),
        (0b0011, 42, 1, 8, 0b011),
        (0b0100, 44, 0, 1, 0b100),
        (0b0101, 48, 0, 1, 0b101),
        // 52-bit PAs: the 4 KiB granule without FEAT_LPA2 stops at 48 bits.
        (0b0110, 48, 0, 1, 0b101),
    ];
    for (pa_range, ipa, level, roots, ps) in expected {
        let g = Stage2Geometry::from_pa_range(pa_range).unwrap();
        assert_eq!(
            (g.ipa_bits(), g.start_level(), g.root_tables()),
            (ipa, level, roots),
            "PARange {pa_range:#06b}"
        );
        assert_eq!(bits(g.vtcr_el2(), 18, 16), ps);
        let pa_max = pa_range_bits(pa_range).unwrap();
        assert!(!s2_invalid_sl(level, pa_max));
        assert!(!s2_inconsistent_sl(ipa, level));
    }
    // Every IPA size offered, with every PA size, is consistent.
    for pa_range in 0..=6u8 {
        for ipa in 32..=48 {
            if let Ok(g) = Stage2Geometry::with_ipa_bits(pa_range, ipa) {
                assert!(!s2_inconsistent_sl(ipa, g.start_level()), "{ipa} bits");
                assert!(g.root_tables() <= MAX_ROOT_TABLES);
                let root_entries = 1usize << (ipa - level_shift(g.start_level()));
                assert_eq!(g.root_tables(), root_entries.div_ceil(ENTRIES_PER_TABLE));
            }
        }
    }
    assert_eq!(
        Stage2Geometry::from_pa_range(0b0111),
        Err(GeometryError::UnsupportedPaRange(0b0111))
    );
}

#[test]
fn smaller_ipa_sizes_and_their_limits() {
    let g = Stage2Geometry::with_ipa_bits(0b0101, 40).unwrap();
    assert_eq!((g.start_level(), g.root_tables(), g.pa_bits()), (1, 2, 48));
    assert_eq!(bits(g.vtcr_el2(), 18, 16), 0b101, "PS follows the PA size");
    let g = Stage2Geometry::with_ipa_bits(0b0101, 43).unwrap();
    assert_eq!((g.start_level(), g.root_tables()), (1, 16));
    let g = Stage2Geometry::with_ipa_bits(0b0101, 39).unwrap();
    assert_eq!((g.start_level(), g.root_tables()), (1, 1));
    assert_eq!(
        Stage2Geometry::with_ipa_bits(0b0001, 40),
        Err(GeometryError::UnsupportedInputBits(40)),
        "IPA larger than the PA size"
    );
    assert_eq!(
        Stage2Geometry::with_ipa_bits(0b0101, 31),
        Err(GeometryError::UnsupportedInputBits(31))
    );
}

#[test]
fn inconsistent_start_levels_are_recognised() {
    // AArch64.S2InconsistentSL, 4 KiB granule.
    assert!(
        s2_inconsistent_sl(40, 2),
        "level 2 resolves at most 34 bits"
    );
    assert!(
        s2_inconsistent_sl(44, 1),
        "level 1 resolves at most 43 bits"
    );
    assert!(!s2_inconsistent_sl(43, 1));
    assert!(s2_inconsistent_sl(39, 0), "level 0 needs at least 40 bits");
    assert!(!s2_inconsistent_sl(40, 0));
    assert!(s2_inconsistent_sl(30, 1), "level 1 needs at least 31 bits");
    // AArch64.S2InvalidSL: starting at level 0 needs PAMax >= 44.
    assert!(s2_invalid_sl(0, 42));
    assert!(!s2_invalid_sl(0, 44));
    assert!(s2_invalid_sl(3, 48), "level 3 needs FEAT_TTST");
}

#[test]
fn vttbr_holds_root_and_vmid() {
    let mut mem = FakeTableMemory::new();
    let s2 = stage2(0b0010, &mut mem);
    assert_eq!(s2.vttbr_el2(3), vttbr_el2(s2.root_pa(), 3));
    assert_eq!(bits(s2.vttbr_el2(3), 47, 1) << 1, s2.root_pa());
    let v = vttbr_el2(0x8_1234_6000, 0x5a);
    assert_eq!(bits(v, 63, 48), 0x5a, "VMID");
    assert_eq!(bits(v, 47, 1) << 1, 0x8_1234_6000, "BADDR");
    assert_eq!(bits(v, 0, 0), 0, "CnP");
}

// ---- EL2 stage 1: TCR_EL2, MAIR_EL2, TTBR0_EL2 ----

#[test]
fn mair_el2_attributes() {
    let byte = |i: u64| bits(MAIR_EL2_VALUE, 8 * i as u32 + 7, 8 * i as u32);
    // Arm ARM MAIR_EL2.Attr<n>: 0b0000dd00 is Device with dd = 01 nGnRE.
    assert_eq!(byte(0), 0b0000_0100, "Attr0: Device-nGnRE");
    // 0booooiiii: 0b1111 = Write-Back Non-transient, Read- and Write-Allocate.
    assert_eq!(byte(1), 0b1111_1111, "Attr1: Normal WB RA/WA");
    // 0b0100 = Non-cacheable, inner and outer.
    assert_eq!(byte(2), 0b0100_0100, "Attr2: Normal Non-cacheable");
    assert_eq!(MAIR_EL2_VALUE >> 24, 0, "Attr3..7 unused");

    // The AttrIndx each memory type writes selects the matching byte.
    for (mem, attr) in [
        (El2MemType::Device, 0x04),
        (El2MemType::Normal, 0xff),
        (El2MemType::NormalNonCacheable, 0x44),
    ] {
        let desc = El2Geometry::leaf_attrs(El2Attrs {
            mem,
            write: true,
            exec: false,
        });
        assert_eq!(byte(bits(desc, 4, 2)), attr, "{mem:?}");
    }
}

#[test]
fn tcr_el2_for_39_bit_identity_map() {
    let g = El2Geometry::new(39, 0b0010).unwrap();
    assert_eq!(g.start_level(), 1);
    let tcr = g.tcr_el2();
    assert_eq!(bits(tcr, 5, 0), 25, "T0SZ");
    assert_eq!(bits(tcr, 9, 8), 0b01, "IRGN0: WB RA/WA");
    assert_eq!(bits(tcr, 11, 10), 0b01, "ORGN0: WB RA/WA");
    assert_eq!(bits(tcr, 13, 12), 0b11, "SH0: Inner Shareable");
    assert_eq!(bits(tcr, 15, 14), 0b00, "TG0: 4 KiB");
    assert_eq!(bits(tcr, 18, 16), 0b010, "PS: 40 bits");
    assert_eq!(bits(tcr, 20, 20), 0, "TBI");
    assert_eq!(bits(tcr, 22, 21), 0, "HA, HD");
    assert_eq!(bits(tcr, 23, 23), 1, "RES1");
    assert_eq!(bits(tcr, 24, 24), 0, "HPD");
    assert_eq!(bits(tcr, 31, 31), 1, "RES1");
    assert_eq!(tcr, 0x8082_3519);
}

#[test]
fn tcr_el2_for_48_bit_identity_map() {
    let g = El2Geometry::new(48, 0b0101).unwrap();
    assert_eq!(g.start_level(), 0);
    let tcr = g.tcr_el2();
    assert_eq!(bits(tcr, 5, 0), 16, "T0SZ");
    assert_eq!(bits(tcr, 18, 16), 0b101, "PS: 48 bits");
    assert_eq!(
        El2Geometry::new(49, 0b0101),
        Err(GeometryError::UnsupportedInputBits(49))
    );
    assert_eq!(ttbr0_el2(0x4008_0000), 0x4008_0000);
}

#[test]
fn el2_identity_map_descriptors() {
    let mut mem = FakeTableMemory::new();
    let g = El2Geometry::new(39, 0b0010).unwrap();
    let mut pt: El2Table = PageTable::new(g, &mut mem).unwrap();
    // Image: 2 MiB of code, 2 MiB of data; a UART page.
    let code = 0x4020_0000;
    pt.map(&mut mem, code, code, 2 * MIB, El2Attrs::CODE)
        .unwrap();
    pt.map(
        &mut mem,
        code + 2 * MIB,
        code + 2 * MIB,
        2 * MIB,
        El2Attrs::DATA,
    )
    .unwrap();
    pt.map(
        &mut mem,
        0x0900_0000,
        0x0900_0000,
        4 * KIB,
        El2Attrs::DEVICE,
    )
    .unwrap();

    let (desc, level) = leaf_of(&pt, &mut mem, code);
    assert_eq!(level, 2);
    assert_eq!(bits(desc, 1, 0), 0b01, "block");
    assert_eq!(bits(desc, 4, 2), 1, "AttrIndx: Normal");
    assert_eq!(bits(desc, 7, 6), 0b11, "AP[2:1]: read-only, AP[1] RES1");
    assert_eq!(bits(desc, 9, 8), 0b11, "SH: Inner Shareable");
    assert_eq!(bits(desc, 10, 10), 1, "AF");
    assert_eq!(bits(desc, 54, 54), 0, "executable");
    assert_eq!(bits(desc, 47, 21) << 21, code, "output address");

    let (desc, _) = leaf_of(&pt, &mut mem, code + 2 * MIB);
    assert_eq!(bits(desc, 7, 6), 0b01, "AP[2:1]: read/write, AP[1] RES1");
    assert_eq!(bits(desc, 54, 54), 1, "XN");

    let (desc, level) = leaf_of(&pt, &mut mem, 0x0900_0000);
    assert_eq!(level, 3);
    assert_eq!(bits(desc, 1, 0), 0b11, "page");
    assert_eq!(bits(desc, 4, 2), 0, "AttrIndx: Device-nGnRE");
    assert_eq!(bits(desc, 54, 54), 1, "XN");
    assert_eq!(bits(desc, 47, 12) << 12, 0x0900_0000);

    assert_eq!(
        pt.translate(&mut mem, 0x0900_0123),
        Some((0x0900_0123, El2Attrs::DEVICE))
    );
    assert_eq!(
        pt.translate(&mut mem, code + 0x1234),
        Some((code + 0x1234, El2Attrs::CODE))
    );
    assert_eq!(pt.translate(&mut mem, 0x0900_1000), None);
    assert_eq!(pt.translate(&mut mem, 1 << 39), None, "beyond the VA size");
    assert_eq!(pt.ttbr0_el2(), ttbr0_el2(pt.root_pa()));
    assert_eq!(bits(pt.ttbr0_el2(), 47, 1) << 1, pt.root_pa());
}

// ---- stage 2 mapping ----

#[test]
fn guest_512m_at_2m_alignment_uses_only_blocks() {
    for (pa_range, root_tables) in [(0b0001, 1), (0b0010, 2), (0b0101, 1)] {
        let mut mem = FakeTableMemory::new();
        let mut s2 = stage2(pa_range, &mut mem);
        s2.map(&mut mem, GUEST_IPA, GUEST_PA, 512 * MIB, S2Attrs::RAM)
            .unwrap();
        // IPA 1 GiB is 1 GiB aligned but 512 MiB is not a whole 1 GiB block:
        // 256 level-2 blocks in one level-2 table, under the root (and, for a
        // level 0 start, one level-1 table).
        let expected = match s2.regime().start_level() {
            0 => 1 + 1 + 1,
            _ => root_tables + 1,
        };
        assert_eq!(s2.table_pages(&mut mem), expected, "PARange {pa_range:#b}");
        for offset in (0..512 * MIB).step_by(2 * MIB as usize) {
            let (desc, level) = leaf_of(&s2, &mut mem, GUEST_IPA + offset);
            assert_eq!((level, bits(desc, 1, 0)), (2, 0b01), "2 MiB block");
        }
    }
}

#[test]
fn stage2_block_descriptor_fields() {
    let mut mem = FakeTableMemory::new();
    let mut s2 = stage2(0b0001, &mut mem);
    s2.map(&mut mem, GUEST_IPA, GUEST_PA, 2 * MIB, S2Attrs::RAM)
        .unwrap();
    s2.map(
        &mut mem,
        0x0800_0000,
        0x0800_0000,
        64 * KIB,
        S2Attrs::DEVICE,
    )
    .unwrap();

    let (desc, _) = leaf_of(&s2, &mut mem, GUEST_IPA);
    assert_eq!(bits(desc, 1, 0), 0b01, "block");
    assert_eq!(bits(desc, 5, 2), 0b1111, "MemAttr: Normal Write-Back");
    assert_eq!(bits(desc, 7, 6), 0b11, "S2AP: read/write");
    assert_eq!(bits(desc, 9, 8), 0b11, "SH: Inner Shareable");
    assert_eq!(bits(desc, 10, 10), 1, "AF");
    assert_eq!(bits(desc, 54, 53), 0, "XN: executable");
    assert_eq!(bits(desc, 47, 21) << 21, GUEST_PA);

    let (desc, level) = leaf_of(&s2, &mut mem, 0x0800_f000);
    assert_eq!((level, bits(desc, 1, 0)), (3, 0b11), "page");
    assert_eq!(bits(desc, 5, 2), 0b0001, "MemAttr: Device-nGnRE");
    assert_eq!(bits(desc, 54, 54), 1, "XN");
    assert_eq!(bits(desc, 47, 12) << 12, 0x0800_f000);
}

#[test]
fn gigabyte_aligned_range_uses_a_level_1_block() {
    let mut mem = FakeTableMemory::new();
    let mut s2 = stage2(0b0001, &mut mem);
    s2.map(&mut mem, GUEST_IPA, GUEST_PA, GIB + 2 * MIB, S2Attrs::RAM)
        .unwrap();
    let (desc, level) = leaf_of(&s2, &mut mem, GUEST_IPA + 0x1234_5000);
    assert_eq!((level, bits(desc, 1, 0)), (1, 0b01), "1 GiB block");
    assert_eq!(leaf_of(&s2, &mut mem, GUEST_IPA + GIB).1, 2);
    assert_eq!(s2.table_pages(&mut mem), 2, "root and one level-2 table");
}

#[test]
fn misaligned_output_forces_pages() {
    let mut mem = FakeTableMemory::new();
    let mut s2 = stage2(0b0001, &mut mem);
    // The IPA is 2 MiB aligned but the PA is only 4 KiB aligned: no block can
    // be used, 1024 pages in two level-3 tables.
    s2.map(
        &mut mem,
        GUEST_IPA,
        GUEST_PA + 0x1000,
        4 * MIB,
        S2Attrs::RAM,
    )
    .unwrap();
    assert_eq!(s2.table_pages(&mut mem), 1 + 1 + 2);
    for offset in [0, 0x1000, 2 * MIB - 0x1000, 2 * MIB, 4 * MIB - 0x1000] {
        let (desc, level) = leaf_of(&s2, &mut mem, GUEST_IPA + offset);
        assert_eq!((level, bits(desc, 1, 0)), (3, 0b11));
    }
    assert_eq!(
        s2.translate(&mut mem, GUEST_IPA + 2 * MIB + 0x10),
        Some((GUEST_PA + 0x1000 + 2 * MIB + 0x10, S2Attrs::RAM))
    );
}

#[test]
fn unaligned_ends_use_pages_and_the_middle_uses_blocks() {
    let mut mem = FakeTableMemory::new();
    let mut s2 = stage2(0b0001, &mut mem);
    let ipa = GUEST_IPA + MIB;
    s2.map(&mut mem, ipa, GUEST_PA + MIB, 4 * MIB, S2Attrs::RAM)
        .unwrap();
    assert_eq!(leaf_of(&s2, &mut mem, ipa).1, 3);
    assert_eq!(leaf_of(&s2, &mut mem, GUEST_IPA + 2 * MIB).1, 2);
    assert_eq!(leaf_of(&s2, &mut mem, GUEST_IPA + 4 * MIB).1, 3);
    assert_eq!(s2.table_pages(&mut mem), 1 + 1 + 2);
    assert_eq!(s2.translate(&mut mem, ipa - 1), None);
    assert_eq!(s2.translate(&mut mem, ipa + 4 * MIB), None);
}

#[test]
fn translate_round_trips() {
    let mut mem = FakeTableMemory::new();
    let mut s2 = stage2(0b0010, &mut mem);
    let ro = S2Attrs {
        mem: S2MemType::NormalNonCacheable,
        read: true,
        write: false,
        exec: false,
    };
    let maps = [
        (GUEST_IPA, GUEST_PA, 512 * MIB, S2Attrs::RAM),
        (0x0800_0000, 0x0800_0000, 0x1_0000, S2Attrs::DEVICE),
        (0x0a00_3000, 0x1_2345_6000, 0x5000, ro),
        // Above 512 GiB: lands in the second concatenated root table.
        (0x80_0000_0000, 0xc000_0000, 2 * GIB, S2Attrs::RAM),
    ];
    for (ipa, pa, size, attrs) in maps {
        s2.map(&mut mem, ipa, pa, size, attrs).unwrap();
    }
    for (ipa, pa, size, attrs) in maps {
        for offset in [0, 0x8, (size / 3) & !7, size - 8] {
            assert_eq!(
                s2.translate(&mut mem, ipa + offset),
                Some((pa + offset, attrs)),
                "IPA {:#x}",
                ipa + offset
            );
        }
        assert_eq!(s2.translate(&mut mem, ipa + size), None);
    }
    assert_eq!(s2.translate(&mut mem, 1 << 40), None, "beyond the IPA size");
    // The root is two contiguous tables aligned to 8 KiB, and the high mapping
    // is reached through the second one.
    assert_eq!(mem.allocations[0].1, 2);
    assert_eq!(s2.root_pa() % (8 * KIB), 0);
    assert_ne!(mem.table(s2.root_pa() + 4 * KIB)[0], 0);
}

#[test]
fn overlapping_map_is_refused_and_changes_nothing() {
    let mut mem = FakeTableMemory::new();
    let mut s2 = stage2(0b0001, &mut mem);
    s2.map(
        &mut mem,
        GUEST_IPA + 4 * MIB,
        GUEST_PA,
        8 * KIB,
        S2Attrs::RAM,
    )
    .unwrap();
    let tables = s2.table_pages(&mut mem);
    assert_eq!(
        s2.map(&mut mem, GUEST_IPA, 0x9000_0000, 8 * MIB, S2Attrs::DEVICE),
        Err(MapError::AlreadyMapped {
            addr: GUEST_IPA + 4 * MIB
        })
    );
    assert_eq!(s2.table_pages(&mut mem), tables);
    assert_eq!(s2.translate(&mut mem, GUEST_IPA), None);
    assert_eq!(
        s2.translate(&mut mem, GUEST_IPA + 4 * MIB + 4 * KIB),
        Some((GUEST_PA + 4 * KIB, S2Attrs::RAM))
    );
    // Overlapping a block from inside it.
    s2.map(
        &mut mem,
        GUEST_IPA + 16 * MIB,
        GUEST_PA,
        2 * MIB,
        S2Attrs::RAM,
    )
    .unwrap();
    assert_eq!(
        s2.map(&mut mem, GUEST_IPA + 17 * MIB, 0, 4 * KIB, S2Attrs::RAM),
        Err(MapError::AlreadyMapped {
            addr: GUEST_IPA + 17 * MIB
        })
    );
}

#[test]
fn bad_arguments_are_errors() {
    let mut mem = FakeTableMemory::new();
    let mut s2 = stage2(0b0001, &mut mem);
    let ram = S2Attrs::RAM;
    assert_eq!(
        s2.map(&mut mem, 0x1000, 0x1000, 0, ram),
        Err(MapError::EmptyRange)
    );
    assert_eq!(
        s2.map(&mut mem, 0x1800, 0x1000, 0x1000, ram),
        Err(MapError::Misaligned)
    );
    assert_eq!(
        s2.map(&mut mem, 0x1000, 0x1800, 0x1000, ram),
        Err(MapError::Misaligned)
    );
    assert_eq!(
        s2.map(&mut mem, 0x1000, 0x1000, 0x1800, ram),
        Err(MapError::Misaligned)
    );
    assert_eq!(
        s2.map(&mut mem, (1 << 36) - 0x1000, 0, 0x2000, ram),
        Err(MapError::OutOfRange)
    );
    assert_eq!(
        s2.map(&mut mem, 0, (1 << 36) - 0x1000, 0x2000, ram),
        Err(MapError::OutputOutOfRange)
    );
    assert_eq!(
        s2.map(&mut mem, !0xfff, 0, 0x2000, ram),
        Err(MapError::OutOfRange)
    );
    assert_eq!(
        s2.unmap(&mut mem, 0x1000, 0x800, &mut no_bbm),
        Err(MapError::Misaligned)
    );
    assert_eq!(s2.table_pages(&mut mem), 1, "nothing was allocated");
}

// ---- unmap, splits and break-before-make ----

#[test]
fn unmap_then_translate_is_none() {
    let mut mem = FakeTableMemory::new();
    let mut s2 = stage2(0b0001, &mut mem);
    s2.map(&mut mem, GUEST_IPA, GUEST_PA, 512 * MIB, S2Attrs::RAM)
        .unwrap();
    let flush = s2
        .unmap(&mut mem, GUEST_IPA, 512 * MIB, &mut no_bbm)
        .unwrap();
    // 256 blocks: one invalidation per 2 MiB.
    assert_eq!(
        flush,
        TlbFlush::Range {
            start: GUEST_IPA,
            size: 512 * MIB,
            stride: 2 * MIB
        }
    );
    for offset in (0..512 * MIB).step_by(MIB as usize) {
        assert_eq!(s2.translate(&mut mem, GUEST_IPA + offset), None);
    }
    // Unmapping again finds nothing to invalidate.
    assert_eq!(
        s2.unmap(&mut mem, GUEST_IPA, 512 * MIB, &mut no_bbm),
        Ok(TlbFlush::None)
    );
    // The emptied tables are reused.
    let tables = s2.table_pages(&mut mem);
    s2.map(&mut mem, GUEST_IPA, GUEST_PA, 512 * MIB, S2Attrs::RAM)
        .unwrap();
    assert_eq!(s2.table_pages(&mut mem), tables);
}

#[test]
fn unmapping_many_pages_asks_for_a_full_flush() {
    let mut mem = FakeTableMemory::new();
    let mut s2 = stage2(0b0001, &mut mem);
    s2.map(
        &mut mem,
        GUEST_IPA,
        GUEST_PA + 0x1000,
        4 * MIB,
        S2Attrs::RAM,
    )
    .unwrap();
    assert_eq!(
        s2.unmap(&mut mem, GUEST_IPA, 4 * MIB, &mut no_bbm),
        Ok(TlbFlush::All),
        "1024 pages is over MAX_TLBI_BY_ADDRESS"
    );
    s2.map(
        &mut mem,
        GUEST_IPA,
        GUEST_PA + 0x1000,
        8 * KIB,
        S2Attrs::RAM,
    )
    .unwrap();
    assert_eq!(
        s2.unmap(&mut mem, GUEST_IPA, 8 * KIB, &mut no_bbm),
        Ok(TlbFlush::Range {
            start: GUEST_IPA,
            size: 8 * KIB,
            stride: 4 * KIB
        })
    );
}

#[test]
fn unmapping_a_page_inside_a_block_splits_it_with_break_before_make() {
    let mut mem = FakeTableMemory::new();
    let mut s2 = stage2(0b0001, &mut mem);
    s2.map(&mut mem, GUEST_IPA, GUEST_PA, 512 * MIB, S2Attrs::RAM)
        .unwrap();
    let hole = GUEST_IPA + 6 * MIB + 0x5000;
    let mut log = Vec::new();
    let flush = s2
        .unmap(&mut mem, hole, 4 * KIB, &mut recorder(&mut log))
        .unwrap();
    // The 2 MiB block holding the page was broken and invalidated once, before
    // the table replacing it was linked.
    assert_eq!(
        log,
        [TlbFlush::Range {
            start: GUEST_IPA + 6 * MIB,
            size: 2 * MIB,
            stride: 2 * MIB
        }]
    );
    assert_eq!(
        flush,
        TlbFlush::Range {
            start: hole,
            size: 4 * KIB,
            stride: 4 * KIB
        }
    );
    assert_eq!(s2.translate(&mut mem, hole), None);
    for ipa in [
        hole - 0x1000,
        hole + 0x1000,
        GUEST_IPA + 6 * MIB,
        GUEST_IPA + 8 * MIB - 8,
    ] {
        assert_eq!(
            s2.translate(&mut mem, ipa),
            Some((GUEST_PA + (ipa - GUEST_IPA), S2Attrs::RAM))
        );
    }
    assert_eq!(leaf_of(&s2, &mut mem, hole + 0x1000).1, 3);
    assert_eq!(
        leaf_of(&s2, &mut mem, GUEST_IPA + 8 * MIB).1,
        2,
        "neighbour block kept"
    );
    assert_eq!(s2.table_pages(&mut mem), 1 + 1 + 1);
}

#[test]
fn splitting_a_gigabyte_block_builds_the_subtree_before_the_make() {
    let mut mem = FakeTableMemory::new();
    let mut s2 = stage2(0b0001, &mut mem);
    s2.map(&mut mem, GUEST_IPA, GUEST_PA, GIB, S2Attrs::RAM)
        .unwrap();
    assert_eq!(leaf_of(&s2, &mut mem, GUEST_IPA).1, 1);
    let hole = GUEST_IPA + 300 * MIB + 0x3000;
    let mut log = Vec::new();
    let flush = s2
        .unmap(&mut mem, hole, 8 * KIB, &mut recorder(&mut log))
        .unwrap();
    assert_eq!(
        log,
        [TlbFlush::Range {
            start: GUEST_IPA,
            size: GIB,
            stride: GIB
        }],
        "one break-before-make for the whole split"
    );
    assert_eq!(
        flush,
        TlbFlush::Range {
            start: hole,
            size: 8 * KIB,
            stride: 4 * KIB
        }
    );
    assert_eq!(s2.table_pages(&mut mem), 1 + 1 + 1);
    assert_eq!(s2.translate(&mut mem, hole + 0x1fff), None);
    for ipa in [GUEST_IPA, hole - 8, hole + 0x2000, GUEST_IPA + GIB - 8] {
        assert_eq!(
            s2.translate(&mut mem, ipa),
            Some((GUEST_PA + (ipa - GUEST_IPA), S2Attrs::RAM))
        );
    }
}

#[test]
fn replace_follows_break_before_make() {
    let mut mem = FakeTableMemory::new();
    let mut s2 = stage2(0b0001, &mut mem);
    s2.map(&mut mem, GUEST_IPA, GUEST_PA, 8 * MIB, S2Attrs::RAM)
        .unwrap();
    let target = GUEST_IPA + 2 * MIB;
    let mut log = Vec::new();
    s2.replace(
        &mut mem,
        target,
        0x0900_0000,
        2 * MIB,
        S2Attrs::DEVICE,
        &mut recorder(&mut log),
    )
    .unwrap();
    assert_eq!(
        log,
        [TlbFlush::Range {
            start: target,
            size: 2 * MIB,
            stride: 2 * MIB
        }]
    );
    assert_eq!(
        s2.translate(&mut mem, target + 0x10),
        Some((0x0900_0010, S2Attrs::DEVICE))
    );
    assert_eq!(
        s2.translate(&mut mem, target - 8),
        Some((GUEST_PA + 2 * MIB - 8, S2Attrs::RAM))
    );
    assert_eq!(
        s2.translate(&mut mem, target + 2 * MIB),
        Some((GUEST_PA + 4 * MIB, S2Attrs::RAM))
    );
    // Replacing unmapped space needs no invalidation at all.
    s2.replace(&mut mem, 0, 0, 4 * KIB, S2Attrs::DEVICE, &mut no_bbm)
        .unwrap();
    assert_eq!(s2.translate(&mut mem, 0), Some((0, S2Attrs::DEVICE)));
}

// ---- table memory exhaustion ----

#[test]
fn out_of_table_memory_while_mapping_changes_no_translation() {
    // Root plus one table: the level-2 table fits, the level-3 tables do not.
    let mut mem = FakeTableMemory::with_budget(2);
    let mut s2 = stage2(0b0001, &mut mem);
    assert_eq!(
        s2.map(
            &mut mem,
            GUEST_IPA,
            GUEST_PA + 0x1000,
            4 * MIB,
            S2Attrs::RAM
        ),
        Err(MapError::OutOfTableMemory)
    );
    for offset in (0..4 * MIB).step_by(4 * KIB as usize) {
        assert_eq!(s2.translate(&mut mem, GUEST_IPA + offset), None);
    }
    // Blocks need no more tables than are left.
    s2.map(
        &mut mem,
        GUEST_IPA + 8 * MIB,
        GUEST_PA,
        4 * MIB,
        S2Attrs::RAM,
    )
    .unwrap();
    assert!(s2.translate(&mut mem, GUEST_IPA + 8 * MIB).is_some());
}

#[test]
fn out_of_table_memory_while_splitting_changes_nothing() {
    let mut mem = FakeTableMemory::with_budget(2);
    let mut s2 = stage2(0b0001, &mut mem);
    s2.map(&mut mem, GUEST_IPA, GUEST_PA, GIB, S2Attrs::RAM)
        .unwrap();
    let live = mem.live_pages();
    // Splitting the 1 GiB block down to a page needs two tables; one is left.
    assert_eq!(
        s2.unmap(&mut mem, GUEST_IPA + 0x1000, 4 * KIB, &mut no_bbm),
        Err(MapError::OutOfTableMemory)
    );
    assert_eq!(mem.live_pages(), live, "the partial subtree was given back");
    assert_eq!(leaf_of(&s2, &mut mem, GUEST_IPA).1, 1, "block untouched");
    assert_eq!(
        s2.translate(&mut mem, GUEST_IPA + 0x1000),
        Some((GUEST_PA + 0x1000, S2Attrs::RAM))
    );
}

#[test]
fn destroy_returns_every_table() {
    let mut mem = FakeTableMemory::new();
    let mut s2 = stage2(0b0011, &mut mem); // 42 bits: 8 concatenated roots
    assert_eq!(mem.allocations[0], (s2.root_pa(), 8));
    assert_eq!(s2.root_pa() % (32 * KIB), 0, "aligned to the root size");
    s2.map(
        &mut mem,
        GUEST_IPA + 0x1000,
        GUEST_PA,
        3 * MIB,
        S2Attrs::RAM,
    )
    .unwrap();
    s2.map(&mut mem, 0x300_0000_0000, GUEST_PA, 4 * GIB, S2Attrs::RAM)
        .unwrap();
    assert_eq!(mem.live_pages(), s2.table_pages(&mut mem));
    s2.destroy(&mut mem);
    assert_eq!(mem.live_pages(), 0);
}

#[test]
fn tlb_flush_merge() {
    let a = TlbFlush::Range {
        start: 0x1000,
        size: 0x1000,
        stride: 0x1000,
    };
    let b = TlbFlush::Range {
        start: 0x20_0000,
        size: 0x20_0000,
        stride: 0x20_0000,
    };
    assert_eq!(
        a.merge(b),
        TlbFlush::Range {
            start: 0x1000,
            size: 0x40_0000 - 0x1000,
            stride: 0x1000
        }
    );
    assert_eq!(a.merge(TlbFlush::None), a);
    assert_eq!(TlbFlush::None.merge(b), b);
    assert_eq!(a.merge(TlbFlush::All), TlbFlush::All);
}

#[test]
fn leaf_finds_the_descriptor_the_walker_uses() {
    let mut mem = FakeTableMemory::new();
    let g = Stage2Geometry::from_pa_range(0b0101).unwrap();
    let mut t = PageTable::new(g, &mut mem).unwrap();
    t.map(&mut mem, 0x4000_0000, 0x8000_0000, 2 << 20, S2Attrs::RAM)
        .unwrap();
    t.map(&mut mem, 0x4020_0000, 0x9000_0000, 0x1000, S2Attrs::RAM)
        .unwrap();
    let block = t.leaf(&mut mem, 0x4012_3456).unwrap();
    assert_eq!(block.size, 2 << 20);
    assert_eq!(block.desc & 0xffff_ffff_f000, 0x8000_0000);
    let page = t.leaf(&mut mem, 0x4020_0fff).unwrap();
    assert_eq!(page.size, 0x1000);
    assert_eq!(page.desc & 0xffff_ffff_f000, 0x9000_0000);
    assert!(t.leaf(&mut mem, 0x4020_1000).is_none());
    // Clearing the descriptor where `leaf` says it is unmaps exactly that.
    mem.table(block.entry_pa & !0xfff)[((block.entry_pa & 0xfff) / 8) as usize] = 0;
    assert!(t.translate(&mut mem, 0x4000_0000).is_none());
    assert!(t.translate(&mut mem, 0x4020_0000).is_some());
    // Writing the value back maps it again.
    mem.table(block.entry_pa & !0xfff)[((block.entry_pa & 0xfff) / 8) as usize] = block.desc;
    assert_eq!(t.translate(&mut mem, 0x401f_f000).unwrap().0, 0x801f_f000);
}
