//! A flat index of the device tree: every node with its path, parent, `reg` translated
//! to CPU physical addresses, and effective interrupt parent.
//!
//! The `fdt` crate walks the structure; this module adds what it lacks: node paths,
//! parent links, `ranges` translation (Devicetree Specification 2.3.8) and decoding of
//! cells whose count comes from the parent (`#address-cells`, `#size-cells`).

use alloc::string::String;
use alloc::vec::Vec;

use fdt::Fdt;
use fdt::node::FdtNode;

use super::{MemRange, PlatformError};

/// Devicetree Specification 2.3.5: `#address-cells` defaults to 2, `#size-cells` to 1.
const DEFAULT_ADDRESS_CELLS: u32 = 2;
const DEFAULT_SIZE_CELLS: u32 = 1;

/// How many 32-bit cells an address and a size take on a bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cells {
    pub(crate) address: u32,
    pub(crate) size: u32,
}

/// What a node's `reg` says, after translation to the CPU's physical address space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reg {
    Absent,
    /// Not well-formed for the parent's cell counts, or a range wraps past 2^64.
    Malformed(&'static str),
    /// Well-formed, but on a bus that no `ranges` chain maps into CPU addresses (an I2C
    /// bus, a PCI bus with three address cells, a bus without `ranges`).
    NotCpuAddressable,
    Cpu(Vec<MemRange>),
}

/// One window of a bus's `ranges`, already composed down to CPU addresses.
#[derive(Debug, Clone, Copy)]
struct Window {
    child: u64,
    cpu: u64,
    size: u64,
}

/// How addresses on a node's child bus become CPU physical addresses.
#[derive(Debug, Clone)]
enum AddressMap {
    Identity,
    Windows(Vec<Window>),
}

impl AddressMap {
    fn translate(&self, addr: u64, size: u64) -> Option<u64> {
        match self {
            AddressMap::Identity => Some(addr),
            AddressMap::Windows(windows) => windows.iter().find_map(|w| {
                let end = addr.checked_add(size)?;
                let w_end = w.child.checked_add(w.size)?;
                (addr >= w.child && end <= w_end).then(|| w.cpu + (addr - w.child))
            }),
        }
    }
}

pub(crate) struct Node<'b, 'a> {
    pub(crate) fdt: FdtNode<'b, 'a>,
    /// Node name with unit address, e.g. `pl011@9000000`.
    pub(crate) name: &'a str,
    pub(crate) path: String,
    pub(crate) parent: Option<usize>,
    pub(crate) reg: Reg,
    /// Cell counts of this node's children (its own `#address-cells`/`#size-cells`).
    pub(crate) child_cells: Cells,
    /// `None` when this node's children are not in CPU address space.
    child_map: Option<AddressMap>,
    /// Phandle of the effective interrupt parent: own `interrupt-parent` or the
    /// nearest ancestor's (Devicetree Specification 2.4.1).
    pub(crate) interrupt_parent: Option<u32>,
    pub(crate) phandle: Option<u32>,
}

impl<'b, 'a> Node<'b, 'a> {
    /// Name without the unit address: `pl011` for `pl011@9000000`.
    pub(crate) fn base_name(&self) -> &'a str {
        self.name.split('@').next().unwrap_or(self.name)
    }

    pub(crate) fn prop(&self, name: &str) -> Option<&'a [u8]> {
        self.fdt.property(name).map(|p| p.value)
    }

    pub(crate) fn prop_u32(&self, name: &str) -> Option<u32> {
        cell_value(self.prop(name)?, 1).map(|v| v as u32)
    }

    /// A string property without its NUL terminator; `None` if absent or not UTF-8.
    pub(crate) fn prop_str(&self, name: &str) -> Option<&'a str> {
        let v = self.prop(name)?;
        let v = v.split(|&b| b == 0).next().unwrap_or(v);
        core::str::from_utf8(v).ok()
    }

    /// A string-list property (`compatible`): the NUL-separated UTF-8 strings.
    pub(crate) fn strings(&self, name: &str) -> impl Iterator<Item = &'a str> + use<'a, 'b> {
        self.prop(name)
            .unwrap_or(&[])
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .filter_map(|s| core::str::from_utf8(s).ok())
    }

    pub(crate) fn is_compatible(&self, any_of: &[&str]) -> bool {
        self.strings("compatible").any(|c| any_of.contains(&c))
    }

    /// Devicetree Specification 2.3.4: absent `status` means "okay".
    pub(crate) fn is_enabled(&self) -> bool {
        matches!(self.prop_str("status"), None | Some("okay") | Some("ok"))
    }
}

/// Reads one value of `cells` 32-bit big-endian cells (1 or 2) from the start of `v`.
pub(crate) fn cell_value(v: &[u8], cells: u32) -> Option<u64> {
    let word = |i: usize| {
        v.get(i * 4..i * 4 + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    match cells {
        0 => Some(0),
        1 => word(0).map(u64::from),
        2 => Some((u64::from(word(0)?) << 32) | u64::from(word(1)?)),
        _ => None,
    }
}

/// Reads a property holding one number of one or two cells, chosen by its length
/// (`linux,initrd-start`, `cpu-release-addr`).
pub(crate) fn sized_value(v: &[u8]) -> Option<u64> {
    match v.len() {
        4 => cell_value(v, 1),
        8 => cell_value(v, 2),
        _ => None,
    }
}

/// Splits `v` into entries of `cells.iter().sum()` cells, each decoded with the given
/// per-field cell counts (each 0..=2). `None` if the length does not divide.
fn decode_entries(v: &[u8], fields: &[u32]) -> Option<Vec<Vec<u64>>> {
    // The counts come from the blob (`#address-cells = <0xffffffff>` is well-formed):
    // refuse them before adding them up.
    if fields.iter().any(|&c| c > 2) {
        return None;
    }
    let entry_len = fields.iter().sum::<u32>() as usize * 4;
    if entry_len == 0 || !v.len().is_multiple_of(entry_len) {
        return None;
    }
    v.chunks_exact(entry_len)
        .map(|chunk| {
            let mut off = 0;
            fields
                .iter()
                .map(|&c| {
                    let value = cell_value(&chunk[off..], c);
                    off += c as usize * 4;
                    value
                })
                .collect::<Option<Vec<u64>>>()
        })
        .collect()
}

fn cells_of(node: &FdtNode<'_, '_>) -> Cells {
    let get = |name| {
        node.property(name)
            .and_then(|p| cell_value(p.value, 1))
            .map(|v| v as u32)
    };
    Cells {
        address: get("#address-cells").unwrap_or(DEFAULT_ADDRESS_CELLS),
        size: get("#size-cells").unwrap_or(DEFAULT_SIZE_CELLS),
    }
}

pub(crate) struct Tree<'b, 'a> {
    pub(crate) nodes: Vec<Node<'b, 'a>>,
}

impl<'b, 'a> Tree<'b, 'a> {
    /// Indexes every node, depth-first in blob order; index 0 is the root.
    pub(crate) fn index(fdt: &'b Fdt<'a>) -> Result<Self, PlatformError> {
        let root = fdt.find_node("/").ok_or(PlatformError::Malformed {
            offset: 0,
            reason: "no root node",
        })?;
        let mut nodes = Vec::new();
        nodes.push(Node {
            fdt: root,
            name: "",
            path: String::from("/"),
            parent: None,
            reg: Reg::Absent,
            child_cells: cells_of(&root),
            child_map: Some(AddressMap::Identity),
            interrupt_parent: root
                .property("interrupt-parent")
                .and_then(|p| cell_value(p.value, 1))
                .map(|v| v as u32),
            phandle: phandle_of(&root),
        });
        let mut stack: Vec<(FdtNode<'b, 'a>, usize)> = Vec::new();
        push_children(&mut stack, root, 0);
        while let Some((fdt_node, parent_idx)) = stack.pop() {
            let node = Self::make_node(&nodes[parent_idx], parent_idx, fdt_node);
            let idx = nodes.len();
            nodes.push(node);
            push_children(&mut stack, fdt_node, idx);
        }
        Ok(Tree { nodes })
    }

    fn make_node(parent: &Node<'b, 'a>, parent_idx: usize, n: FdtNode<'b, 'a>) -> Node<'b, 'a> {
        let path = if parent_idx == 0 {
            alloc::format!("/{}", n.name)
        } else {
            alloc::format!("{}/{}", parent.path, n.name)
        };
        let child_cells = cells_of(&n);
        let parent_cells = parent.child_cells;
        let reg = match n.property("reg") {
            None => Reg::Absent,
            Some(p) => decode_reg(p.value, parent_cells, parent.child_map.as_ref()),
        };
        let child_map = match n.property("ranges") {
            None => None,
            Some(p) if p.value.is_empty() => parent.child_map.clone(),
            Some(p) => compose_ranges(
                p.value,
                child_cells,
                parent_cells,
                parent.child_map.as_ref(),
            ),
        };
        let interrupt_parent = n
            .property("interrupt-parent")
            .and_then(|p| cell_value(p.value, 1))
            .map(|v| v as u32)
            .or(parent.interrupt_parent);
        Node {
            fdt: n,
            name: n.name,
            path,
            parent: Some(parent_idx),
            reg,
            child_cells,
            child_map,
            interrupt_parent,
            phandle: phandle_of(&n),
        }
    }

    pub(crate) fn root(&self) -> &Node<'b, 'a> {
        &self.nodes[0]
    }

    /// Direct children of the root named `name` (with or without unit address).
    pub(crate) fn root_children<'t>(
        &'t self,
        base_name: &'t str,
    ) -> impl Iterator<Item = (usize, &'t Node<'b, 'a>)> + 't {
        self.nodes
            .iter()
            .enumerate()
            .filter(move |(_, n)| n.parent == Some(0) && n.base_name() == base_name)
    }

    pub(crate) fn children_of(&self, idx: usize) -> impl Iterator<Item = (usize, &Node<'b, 'a>)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(move |(_, n)| n.parent == Some(idx))
    }

    pub(crate) fn by_phandle(&self, phandle: u32) -> Option<&Node<'b, 'a>> {
        self.nodes.iter().find(|n| n.phandle == Some(phandle))
    }

    /// Finds a node by full path. A path component without a unit address matches a
    /// node of that name with any unit address (Devicetree Specification 2.2.3).
    pub(crate) fn by_path(&self, path: &str) -> Option<usize> {
        if let Some(i) = self.nodes.iter().position(|n| n.path == path) {
            return Some(i);
        }
        let mut idx = 0;
        for component in path.split('/').filter(|c| !c.is_empty()) {
            let (i, _) = self.children_of(idx).find(|(_, n)| {
                if component.contains('@') {
                    n.name == component
                } else {
                    n.base_name() == component
                }
            })?;
            idx = i;
        }
        (idx != 0 || path == "/").then_some(idx)
    }
}

fn phandle_of(n: &FdtNode<'_, '_>) -> Option<u32> {
    n.property("phandle")
        .or_else(|| n.property("linux,phandle"))
        .and_then(|p| cell_value(p.value, 1))
        .map(|v| v as u32)
}

fn push_children<'b, 'a>(
    stack: &mut Vec<(FdtNode<'b, 'a>, usize)>,
    n: FdtNode<'b, 'a>,
    idx: usize,
) {
    let first = stack.len();
    stack.extend(n.children().map(|c| (c, idx)));
    // Pop order is reversed, so reverse to visit children in blob order.
    stack[first..].reverse();
}

fn decode_reg(v: &[u8], cells: Cells, map: Option<&AddressMap>) -> Reg {
    if cells.address == 0 || cells.address > 2 || cells.size > 2 {
        return Reg::NotCpuAddressable;
    }
    let Some(entries) = decode_entries(v, &[cells.address, cells.size]) else {
        return Reg::Malformed("length is not a whole number of (address, size) entries");
    };
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let (base, size) = (e[0], e[1]);
        if base.checked_add(size).is_none() {
            return Reg::Malformed("a range wraps past 2^64");
        }
        let Some(cpu) = map.and_then(|m| m.translate(base, size)) else {
            return Reg::NotCpuAddressable;
        };
        if cpu.checked_add(size).is_none() {
            return Reg::Malformed("a translated range wraps past 2^64");
        }
        out.push(MemRange::new(cpu, size));
    }
    Reg::Cpu(out)
}

/// Devicetree Specification 2.3.8: `ranges` is (child-bus-address, parent-bus-address,
/// length) triplets; child cells from this node, parent cells from its parent.
fn compose_ranges(
    v: &[u8],
    child: Cells,
    parent: Cells,
    parent_map: Option<&AddressMap>,
) -> Option<AddressMap> {
    let parent_map = parent_map?;
    if child.address == 0 || parent.address == 0 {
        return None;
    }
    let entries = decode_entries(v, &[child.address, parent.address, child.size])?;
    let windows = entries
        .iter()
        .filter_map(|e| {
            let cpu = parent_map.translate(e[1], e[2])?;
            cpu.checked_add(e[2])?;
            e[0].checked_add(e[2])?;
            Some(Window {
                child: e[0],
                cpu,
                size: e[2],
            })
        })
        .collect();
    Some(AddressMap::Windows(windows))
}
