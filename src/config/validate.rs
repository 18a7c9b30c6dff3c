//! From the spanned TOML values to a checked [`SystemConfig`], with an error at the exact
//! field for everything the text alone decides.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::ops::{Range, RangeInclusive};

use aarch64_cpu::registers::CLIDR_EL1;
use tock_registers::fields::Field;
use toml::Spanned;
use toml::de::DeTable;

use super::error::{ConfigError, Source};
use super::raw::{Amount, RawCache, RawConsole, RawCpu, RawKernel, RawSystem, RawVm};
use super::{
    CachePolicy, ConsoleConfig, CpuModel, DEFAULT_RAM_BASE, DEFAULT_TIMESLICE_US, EMULATED_DEVICES,
    GUEST_BLOCK, GUEST_IPA_LIMIT, GUEST_PAGE, KernelConfig, MAX_BOOTARGS, MAX_CPUS, MAX_VCPUS,
    NOT_IMPLEMENTED, Passthrough, PassthroughSites, SystemConfig, TIMESLICE_US, VmConfig,
    VmConsole, VmSites,
};
use crate::vm::image::ImageKind;

pub(crate) fn parse(text: &str, file: &str) -> Result<SystemConfig, ConfigError> {
    parse_with(text, file, NOT_IMPLEMENTED)
}

/// [`parse`], refusing the `[vm.cpu]` keys `not_implemented` lists (the tests pass none,
/// to check those keys still read into the model).
pub(crate) fn parse_with(
    text: &str,
    file: &str,
    not_implemented: &[(&str, &str)],
) -> Result<SystemConfig, ConfigError> {
    let src = Source::new(text, file);
    // Before anything recurses into the text (issue 13: the EL2 stack is small).
    super::nesting::check(&src, text)?;
    // Parse once into a spanned tree for syntax errors and to name fields in serde errors,
    // then into the typed structure (which refuses unknown keys).
    let (tree, syntax_errors) = DeTable::parse_recoverable(text);
    if let Some(e) = syntax_errors.first() {
        // The tree recovered around the error still names the field it is in.
        return Err(src.toml_error(e, Some(tree.get_ref())));
    }
    let raw: RawSystem =
        toml::from_str(text).map_err(|e| src.toml_error(&e, Some(tree.get_ref())))?;
    Builder {
        src: &src,
        not_implemented,
    }
    .system(raw)
}

/// A size for people: `256M`, `2G`, else hexadecimal.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [(u32, &str); 4] = [(40, "T"), (30, "G"), (20, "M"), (10, "K")];
    for (shift, unit) in UNITS {
        if bytes != 0 && bytes.trailing_zeros() >= shift {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes:#x}")
}

/// `"256M"`, `"1GiB"`, `"4096"`, `"0x1000"`: binary units, `_` separators allowed.
/// A duration written as digits and a unit, `us`, `ms` or `s` ("4ms"), in microseconds.
fn parse_duration_us(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let bad =
        || format!("`{text}` is not a duration: write digits and a unit, us, ms or s (\"4ms\")");
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '_'))
        .unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let digits: String = digits.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() {
        return Err(bad());
    }
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is too long"))?;
    let scale = match unit.trim() {
        "us" | "µs" => 1,
        "ms" => 1_000,
        "s" => 1_000_000,
        _ => return Err(bad()),
    };
    value
        .checked_mul(scale)
        .ok_or_else(|| format!("`{text}` is too long"))
}

fn parse_amount_text(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let bad = || {
        format!(
            "`{text}` is not a size: write an integer, or digits with a K, M, G or T suffix (\"256M\")"
        )
    };
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        let digits: String = hex.chars().filter(|&c| c != '_').collect();
        return u64::from_str_radix(&digits, 16).map_err(|_| bad());
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '_'))
        .unwrap_or(t.len());
    let (digits, suffix) = t.split_at(split);
    let digits: String = digits.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() {
        return Err(bad());
    }
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is too large"))?;
    let shift = match suffix.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KIB" => 10,
        "M" | "MIB" => 20,
        "G" | "GIB" => 30,
        "T" | "TIB" => 40,
        _ => return Err(bad()),
    };
    value
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("`{text}` is too large"))
}

fn overlap(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

fn show(r: &Range<u64>) -> String {
    format!("{:#x}..{:#x}", r.start, r.end)
}

struct Builder<'s> {
    src: &'s Source<'s>,
    /// `[vm.cpu]` keys refused as not implemented yet: (key, what guests get today).
    not_implemented: &'s [(&'s str, &'s str)],
}

/// One guest-physical region of a VM, for the overlap check.
struct Region {
    what: String,
    range: Range<u64>,
    span: Range<usize>,
    field: String,
    /// An emulated device rather than something the config wrote.
    emulated: bool,
}

impl Builder<'_> {
    fn err(&self, span: Range<usize>, field: &str, reason: impl Into<String>) -> ConfigError {
        self.src.error_at(Some(span), field, reason)
    }

    fn pos(&self, span: Range<usize>) -> Option<super::Position> {
        Some(self.src.position(span.start))
    }

    fn amount(&self, value: &Spanned<Amount>, field: &str) -> Result<u64, ConfigError> {
        match value.get_ref() {
            Amount::Integer(n) => {
                u64::try_from(*n).map_err(|_| self.err(value.span(), field, "must not be negative"))
            }
            Amount::Text(text) => {
                parse_amount_text(text).map_err(|r| self.err(value.span(), field, r))
            }
        }
    }

    fn int(
        &self,
        value: &Spanned<i64>,
        field: &str,
        allowed: RangeInclusive<i64>,
    ) -> Result<i64, ConfigError> {
        let n = *value.get_ref();
        if allowed.contains(&n) {
            Ok(n)
        } else {
            Err(self.err(
                value.span(),
                field,
                format!(
                    "{n} is out of range: must be {}..={}",
                    allowed.start(),
                    allowed.end()
                ),
            ))
        }
    }

    fn path(&self, value: &Spanned<String>, field: &str) -> Result<String, ConfigError> {
        let path = value.get_ref();
        if path.trim().is_empty() {
            return Err(self.err(value.span(), field, "the path is empty"));
        }
        if path.contains('\0') {
            return Err(self.err(value.span(), field, "the path contains a NUL character"));
        }
        Ok(path.clone())
    }

    fn system(&self, raw: RawSystem) -> Result<SystemConfig, ConfigError> {
        let mut vms: Vec<VmConfig> = Vec::new();
        let mut names: BTreeMap<String, u32> = BTreeMap::new();
        // Physical CPU, INTID and passthrough range -> the VM that has it.
        let mut cpu_owner: BTreeMap<usize, (String, bool)> = BTreeMap::new();
        let mut irq_owner: BTreeMap<u32, String> = BTreeMap::new();
        let mut ranges: Vec<(Range<u64>, String)> = Vec::new();

        for (index, raw_vm) in raw.vm.iter().enumerate() {
            let vm = self.vm(raw_vm.get_ref(), index)?;
            let at = format!("vm.{}", vm.name);
            let name_span = raw_vm.get_ref().name.span();
            if let Some(line) = names.get(&vm.name) {
                return Err(self.err(
                    name_span,
                    &format!("{at}.name"),
                    format!(
                        "the name `{}` is already used by the VM at line {line}",
                        vm.name
                    ),
                ));
            }
            names.insert(vm.name.clone(), self.src.position(name_span.start).line);

            // A CPU an exclusive VM lists is no other VM's; any other CPU may be
            // listed by several VMs (their vCPUs share it).
            if let Some(cpus) = &raw_vm.get_ref().cpus {
                for cpu in cpus.get_ref() {
                    let n = *cpu.get_ref() as usize;
                    if let Some((owner, owner_exclusive)) = cpu_owner.get(&n)
                        && *owner != vm.name
                        && (*owner_exclusive || vm.exclusive)
                    {
                        let (holder, reason) = if *owner_exclusive {
                            (owner.as_str(), "which is exclusive")
                        } else {
                            (owner.as_str(), "and this VM is exclusive")
                        };
                        return Err(self.err(
                            cpu.span(),
                            &format!("{at}.cpus"),
                            format!(
                                "physical CPU {n} is already given to VM `{holder}`, {reason}: an exclusive VM's CPUs are not shared"
                            ),
                        ));
                    }
                    cpu_owner
                        .entry(n)
                        .or_insert_with(|| (vm.name.clone(), vm.exclusive));
                }
            }
            for (i, (pt, raw_pt)) in vm
                .passthrough
                .iter()
                .zip(&raw_vm.get_ref().passthrough)
                .enumerate()
            {
                let field = format!("{at}.passthrough[{i}]");
                let range = pt.base..pt.base + pt.size;
                if let Some((_, owner)) = ranges.iter().find(|(r, _)| overlap(r, &range)) {
                    return Err(self.err(
                        raw_pt.get_ref().base.span(),
                        &format!("{field}.base"),
                        format!(
                            "{} overlaps a device already given to VM `{owner}`",
                            show(&range)
                        ),
                    ));
                }
                for (irq, raw_irq) in pt.irqs.iter().zip(&raw_pt.get_ref().irqs) {
                    if let Some(owner) = irq_owner.get(irq) {
                        let whose = if *owner == vm.name {
                            "is listed twice".to_string()
                        } else {
                            format!("is already given to VM `{owner}`")
                        };
                        return Err(self.err(
                            raw_irq.span(),
                            &format!("{field}.irqs"),
                            format!("interrupt {irq} {whose}"),
                        ));
                    }
                    irq_owner.insert(*irq, vm.name.clone());
                }
            }
            for pt in &vm.passthrough {
                ranges.push((pt.base..pt.base + pt.size, vm.name.clone()));
            }
            vms.push(vm);
        }
        if vms.is_empty() {
            return Err(self.src.error_at(
                None,
                "vm",
                "no [[vm]] table: the config must describe at least one VM",
            ));
        }
        let console = self.console(raw.console.as_ref(), &vms)?;
        Ok(SystemConfig {
            console,
            vms,
            file: self.src.file.into(),
        })
    }

    fn console(
        &self,
        raw: Option<&Spanned<RawConsole>>,
        vms: &[VmConfig],
    ) -> Result<ConsoleConfig, ConfigError> {
        let first_with_console = vms.iter().position(|vm| vm.console == VmConsole::Pl011);
        let mut console = ConsoleConfig {
            switch_key: 0x01,
            switch_presses: 3,
            input: first_with_console,
        };
        let Some(raw) = raw.map(Spanned::get_ref) else {
            return Ok(console);
        };
        if let Some(key) = &raw.switch_key {
            let field = "console.switch_key";
            let text = key.get_ref().to_ascii_lowercase();
            let letter = text
                .strip_prefix("ctrl-")
                .or_else(|| text.strip_prefix("ctrl+"))
                .filter(|l| l.len() == 1 && l.as_bytes()[0].is_ascii_lowercase())
                .ok_or_else(|| {
                    self.err(
                        key.span(),
                        field,
                        "write the key as \"ctrl-a\" .. \"ctrl-z\"",
                    )
                })?;
            let letter = letter.as_bytes()[0];
            // Ctrl-h/i/j/m are backspace, tab, line feed and return: keys a guest needs.
            if matches!(letter, b'h' | b'i' | b'j' | b'm') {
                return Err(self.err(
                    key.span(),
                    field,
                    format!(
                        "ctrl-{} is backspace, tab or a line ending; choose another key",
                        letter as char
                    ),
                ));
            }
            console.switch_key = letter - b'a' + 1;
        }
        if let Some(presses) = &raw.switch_presses {
            console.switch_presses = self.int(presses, "console.switch_presses", 1..=5)? as u8;
        }
        if let Some(input) = &raw.input {
            let index = vms
                .iter()
                .position(|vm| vm.name == *input.get_ref())
                .ok_or_else(|| {
                    self.err(
                        input.span(),
                        "console.input",
                        format!("there is no VM named `{}`", input.get_ref()),
                    )
                })?;
            if vms[index].console != VmConsole::Pl011 {
                return Err(self.err(
                    input.span(),
                    "console.input",
                    format!("VM `{}` has console = \"none\"", input.get_ref()),
                ));
            }
            console.input = Some(index);
        }
        Ok(console)
    }

    fn vm(&self, raw: &RawVm, index: usize) -> Result<VmConfig, ConfigError> {
        let name = raw.name.get_ref();
        let valid_name = !name.is_empty()
            && name.len() <= 32
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid_name {
            return Err(self.err(
                raw.name.span(),
                &format!("vm[{index}].name"),
                "a VM name is 1 to 32 letters, digits, '-', '_' or '.'",
            ));
        }
        let at = format!("vm.{name}");
        let f = |key: &str| format!("{at}.{key}");
        let mut sites = VmSites {
            vm: self.pos(raw.name.span()),
            ..VmSites::default()
        };

        // vCPUs and the physical CPUs they run on, and how they share them.
        let exclusive = raw.exclusive.as_ref().is_some_and(|e| *e.get_ref());
        if let Some(e) = &raw.exclusive {
            sites.exclusive = self.pos(e.span());
        }
        let priority = match &raw.priority {
            Some(p) => {
                if exclusive {
                    return Err(self.err(
                        p.span(),
                        &f("priority"),
                        "an exclusive VM shares no CPU, so it has no priority to give",
                    ));
                }
                self.int(p, &f("priority"), 0..=255)? as u8
            }
            None => 0,
        };
        let timeslice_us = match &raw.timeslice {
            Some(t) => {
                if exclusive {
                    return Err(self.err(
                        t.span(),
                        &f("timeslice"),
                        "an exclusive VM shares no CPU, so its vCPUs have no timeslice",
                    ));
                }
                let us = match t.get_ref() {
                    Amount::Integer(_) => Err(String::from(
                        "give a unit: a string such as \"4ms\" or \"500us\"",
                    )),
                    Amount::Text(text) => parse_duration_us(text),
                }
                .map_err(|r| self.err(t.span(), &f("timeslice"), r))?;
                if !TIMESLICE_US.contains(&us) {
                    return Err(self.err(
                        t.span(),
                        &f("timeslice"),
                        format!(
                            "{us} us is out of range: must be 100us..=1s (a shorter slice costs more in switches than it runs)"
                        ),
                    ));
                }
                us
            }
            None => DEFAULT_TIMESLICE_US,
        };
        let cpus = match &raw.cpus {
            None => None,
            Some(list) => {
                if list.get_ref().is_empty() {
                    return Err(self.err(
                        list.span(),
                        &f("cpus"),
                        "lists no CPU: give one physical CPU per vCPU",
                    ));
                }
                let mut cpus: Vec<usize> = Vec::new();
                for cpu in list.get_ref() {
                    let n = self.int(cpu, &f("cpus"), 0..=(MAX_CPUS as i64 - 1))? as usize;
                    if exclusive && cpus.contains(&n) {
                        return Err(self.err(
                            cpu.span(),
                            &f("cpus"),
                            format!(
                                "physical CPU {n} is listed twice in an exclusive VM: each of its vCPUs has a CPU of its own"
                            ),
                        ));
                    }
                    cpus.push(n);
                }
                sites.cpus = self.pos(list.span());
                Some(cpus)
            }
        };
        let vcpus = match (&raw.vcpus, &cpus) {
            (Some(v), cpus) => {
                let n = self.int(v, &f("vcpus"), 1..=MAX_VCPUS as i64)? as usize;
                if let Some(cpus) = cpus
                    && cpus.len() != n
                {
                    return Err(self.err(
                        v.span(),
                        &f("vcpus"),
                        format!(
                            "vcpus = {n} but cpus lists {} CPU(s): cpus gives the physical CPU of each vCPU",
                            cpus.len()
                        ),
                    ));
                }
                sites.vcpus = self.pos(v.span());
                n
            }
            (None, Some(cpus)) => {
                if cpus.len() > MAX_VCPUS {
                    let span = raw.cpus.as_ref().map(Spanned::span).unwrap_or_default();
                    return Err(self.err(span, &f("cpus"), format!("more than {MAX_VCPUS} vCPUs")));
                }
                cpus.len()
            }
            (None, None) => 1,
        };

        // RAM.
        let memory = self.amount(&raw.memory, &f("memory"))?;
        sites.memory = self.pos(raw.memory.span());
        if memory == 0 || memory % GUEST_BLOCK != 0 {
            return Err(self.err(
                raw.memory.span(),
                &f("memory"),
                format!(
                    "{} is not a non-zero multiple of 2M: guest RAM is mapped in 2 MiB stage-2 blocks",
                    human_size(memory)
                ),
            ));
        }
        let (base, base_span, base_field) = match &raw.base {
            Some(b) => (self.amount(b, &f("base"))?, b.span(), f("base")),
            None => (DEFAULT_RAM_BASE, raw.memory.span(), f("memory")),
        };
        if base % GUEST_BLOCK != 0 {
            return Err(self.err(
                base_span,
                &base_field,
                format!(
                    "{base:#x} is not a multiple of 2M: guest RAM is mapped in 2 MiB stage-2 blocks"
                ),
            ));
        }
        let ram = base..base.saturating_add(memory);
        if ram.end > GUEST_IPA_LIMIT {
            return Err(self.err(
                base_span,
                &base_field,
                format!(
                    "RAM {} ends above the guest-physical limit {GUEST_IPA_LIMIT:#x} (512G)",
                    show(&ram)
                ),
            ));
        }

        // Images.
        let kernel = self.kernel(raw, &f("kernel"), &ram)?;
        sites.kernel = self.pos(raw.kernel.span());
        let initrd = match &raw.initrd {
            Some(p) => {
                sites.initrd = self.pos(p.span());
                Some(self.path(p, &f("initrd"))?)
            }
            None => None,
        };
        let dtb = match &raw.dtb {
            Some(p) => {
                sites.dtb = self.pos(p.span());
                Some(self.path(p, &f("dtb"))?)
            }
            None => None,
        };
        let bootargs = match &raw.bootargs {
            Some(b) if b.get_ref().len() >= MAX_BOOTARGS || b.get_ref().contains('\0') => {
                return Err(self.err(
                    b.span(),
                    &f("bootargs"),
                    format!("must be shorter than {MAX_BOOTARGS} bytes and contain no NUL"),
                ));
            }
            Some(b) => Some(b.get_ref().clone()),
            None => None,
        };
        let console = match raw
            .console
            .as_ref()
            .map(|c| (c.get_ref().as_str(), c.span()))
        {
            None | Some(("pl011", _)) => VmConsole::Pl011,
            Some(("none", _)) => VmConsole::None,
            Some((other, span)) => {
                return Err(self.err(
                    span,
                    &f("console"),
                    format!("unknown console `{other}`: use \"pl011\" or \"none\""),
                ));
            }
        };

        // Passthrough devices.
        let mut passthrough = Vec::new();
        for (i, raw_pt) in raw.passthrough.iter().enumerate() {
            let pt = raw_pt.get_ref();
            let field = format!("{at}.passthrough[{i}]");
            let pt_base = self.amount(&pt.base, &format!("{field}.base"))?;
            let size = self.amount(&pt.size, &format!("{field}.size"))?;
            if pt_base % GUEST_PAGE != 0 {
                return Err(self.err(
                    pt.base.span(),
                    &format!("{field}.base"),
                    format!("{pt_base:#x} is not a multiple of 4K, the stage-2 page size"),
                ));
            }
            if size == 0 || size % GUEST_PAGE != 0 {
                return Err(self.err(
                    pt.size.span(),
                    &format!("{field}.size"),
                    format!("{size:#x} is not a non-zero multiple of 4K, the stage-2 page size"),
                ));
            }
            if pt_base
                .checked_add(size)
                .is_none_or(|end| end > GUEST_IPA_LIMIT)
            {
                return Err(self.err(
                    pt.base.span(),
                    &format!("{field}.base"),
                    format!("the range ends above the guest-physical limit {GUEST_IPA_LIMIT:#x}"),
                ));
            }
            let mut irqs = Vec::new();
            let mut irq_sites = Vec::new();
            for irq in &pt.irqs {
                irqs.push(self.passthrough_irq(irq, &format!("{field}.irqs"), console)?);
                irq_sites.push(self.pos(irq.span()));
            }
            sites.passthrough.push(PassthroughSites {
                table: self.pos(raw_pt.span()),
                irqs: irq_sites,
            });
            passthrough.push(Passthrough {
                base: pt_base,
                size,
                irqs,
            });
        }

        // The VM's own guest-physical map must not overlap itself.
        let mut regions: Vec<Region> = alloc::vec![Region {
            what: format!("guest RAM {}", show(&ram)),
            range: ram.clone(),
            span: base_span.clone(),
            field: base_field.clone(),
            emulated: false,
        }];
        for dev in EMULATED_DEVICES {
            if dev.console_only && console != VmConsole::Pl011 {
                continue;
            }
            regions.push(Region {
                what: format!(
                    "the emulated {} at {}",
                    dev.name,
                    show(&(dev.base..dev.base + dev.size))
                ),
                range: dev.base..dev.base + dev.size,
                span: base_span.clone(),
                field: base_field.clone(),
                emulated: true,
            });
        }
        for (i, (pt, raw_pt)) in passthrough.iter().zip(&raw.passthrough).enumerate() {
            let range = pt.base..pt.base + pt.size;
            regions.push(Region {
                what: format!("passthrough[{i}] {}", show(&range)),
                range,
                span: raw_pt.get_ref().base.span(),
                field: format!("{at}.passthrough[{i}].base"),
                emulated: false,
            });
        }
        for (i, later) in regions.iter().enumerate() {
            if let Some(earlier) = regions[..i]
                .iter()
                .find(|r| overlap(&r.range, &later.range))
            {
                // Report at what the user wrote: emulated devices come right after RAM, so
                // when the later region is one, the earlier is the VM's RAM.
                let (subject, other) = if later.emulated {
                    (earlier, later)
                } else {
                    (later, earlier)
                };
                return Err(self.err(
                    subject.span.clone(),
                    &subject.field,
                    format!("{} overlaps {}", subject.what, other.what),
                ));
            }
        }

        if let Some(vl) = raw.cpu.as_ref().and_then(|c| c.get_ref().sve_vl.as_ref()) {
            sites.sve_vl = self.pos(vl.span());
        }
        let cpu = match &raw.cpu {
            Some(c) => self.cpu_model(c.get_ref(), &f("cpu"))?,
            None => CpuModel::default(),
        };
        if let Some(c) = &raw.cpu {
            sites.pmu = c.get_ref().pmu.as_ref().and_then(|p| self.pos(p.span()));
            sites.pmu_counters = c
                .get_ref()
                .pmu_counters
                .as_ref()
                .and_then(|p| self.pos(p.span()));
        }

        Ok(VmConfig {
            name: name.clone(),
            vcpus,
            cpus,
            exclusive,
            priority,
            timeslice_us,
            base,
            memory,
            kernel,
            initrd,
            bootargs,
            dtb,
            console,
            passthrough,
            cpu,
            sites,
        })
    }

    /// One INTID of a passthrough device: an SPI (GIC architecture: INTIDs 32..=1019 are
    /// SPIs, the only interrupts a device outside the CPU owns; SGIs and PPIs are per CPU,
    /// and those the hypervisor uses are among them), and none an emulated device of this
    /// VM drives. Whether the device's node lists it is checked against the machine
    /// (`check_against`).
    fn passthrough_irq(
        &self,
        irq: &Spanned<i64>,
        field: &str,
        console: VmConsole,
    ) -> Result<u32, ConfigError> {
        let n = *irq.get_ref();
        let why = match n {
            0..=15 => Some(
                "is an SGI, which CPUs send each other (the hypervisor signals its CPUs with \
                 SGIs); only SPIs 32..=1019 can be given to a VM"
                    .to_string(),
            ),
            16..=31 => Some(
                "is a PPI, private to each CPU (the timers' and the GIC maintenance interrupt \
                 are PPIs the hypervisor uses); only SPIs 32..=1019 can be given to a VM"
                    .to_string(),
            ),
            1020..=1023 => Some(
                "is one of the GIC's special INTIDs; only SPIs 32..=1019 can be given to a VM"
                    .to_string(),
            ),
            _ => EMULATED_DEVICES
                .iter()
                .filter(|d| !d.console_only || console == VmConsole::Pl011)
                .find(|d| d.intid == Some(n as u32))
                .map(|d| {
                    format!(
                        "is the interrupt of this VM's emulated {}: a device given to the VM \
                         cannot share it",
                        d.name
                    )
                }),
        };
        if let Some(why) = why {
            return Err(self.err(irq.span(), field, format!("INTID {n} {why}")));
        }
        Ok(self.int(irq, field, 32..=1019)? as u32)
    }

    fn kernel(
        &self,
        raw: &RawVm,
        field: &str,
        ram: &Range<u64>,
    ) -> Result<KernelConfig, ConfigError> {
        let table = match raw.kernel.get_ref() {
            RawKernel::Path(path) => {
                let path = self.path(&Spanned::new(raw.kernel.span(), path.clone()), field)?;
                return Ok(KernelConfig {
                    path,
                    kind: ImageKind::Auto,
                });
            }
            RawKernel::Table(table) => table,
        };
        let path = self.path(&table.path, &format!("{field}.path"))?;
        let address = |value: &Option<Spanned<Amount>>,
                       key: &str|
         -> Result<Option<(u64, Range<usize>)>, ConfigError> {
            value
                .as_ref()
                .map(|v| Ok((self.amount(v, &format!("{field}.{key}"))?, v.span())))
                .transpose()
        };
        let load = address(&table.load, "load")?;
        let entry = address(&table.entry, "entry")?;
        let format = table
            .format
            .as_ref()
            .map(|f| (f.get_ref().as_str(), f.span()));
        let is_raw = match format {
            Some(("raw", _)) => true,
            None => load.is_some(),
            _ => false,
        };
        let kind = if is_raw {
            let Some((load, load_span)) = load else {
                let span = table.format.as_ref().map(Spanned::span).unwrap_or_default();
                return Err(self.err(
                    span,
                    &format!("{field}.format"),
                    "a raw binary needs `load`, the guest-physical address of its first byte",
                ));
            };
            let (entry, entry_span) = entry.unwrap_or((load, load_span.clone()));
            for (key, value, span) in [("load", load, load_span), ("entry", entry, entry_span)] {
                if !ram.contains(&value) {
                    return Err(self.err(
                        span,
                        &format!("{field}.{key}"),
                        format!("{value:#x} is outside the VM's RAM {}", show(ram)),
                    ));
                }
            }
            ImageKind::Raw { load, entry }
        } else {
            let kind = match format {
                None | Some(("auto", _)) => ImageKind::Auto,
                Some(("image", _)) => ImageKind::Arm64Image,
                Some(("elf", _)) => ImageKind::Elf,
                Some((other, span)) => {
                    return Err(self.err(
                        span,
                        &format!("{field}.format"),
                        format!(
                            "unknown format `{other}`: use \"auto\", \"image\", \"raw\" or \"elf\""
                        ),
                    ));
                }
            };
            if let Some((_, span)) = load {
                return Err(self.err(
                    span,
                    &format!("{field}.load"),
                    "`load` and `entry` are for format = \"raw\"; an Image or ELF says where it goes",
                ));
            }
            if let Some((_, span)) = entry {
                let reason = if format.is_none() {
                    "`entry` needs `load` (a raw binary)"
                } else {
                    "`load` and `entry` are for format = \"raw\"; an Image or ELF says where it goes"
                };
                return Err(self.err(span, &format!("{field}.entry"), reason));
            }
            kind
        };
        Ok(KernelConfig { path, kind })
    }

    fn cpu_model(&self, raw: &RawCpu, at: &str) -> Result<CpuModel, ConfigError> {
        let f = |key: &str| format!("{at}.{key}");
        let mut model = CpuModel::default();
        if let Some(cache) = &raw.cache {
            model.cache = match cache.get_ref() {
                RawCache::Named(name) if name == "virtual" => CachePolicy::Virtual,
                RawCache::Named(name) if name == "host" => CachePolicy::Host,
                RawCache::Named(other) => {
                    return Err(self.err(cache.span(), &f("cache"), format!("unknown cache policy `{other}`: use \"virtual\", \"host\" or {{ clidr = ..., ccsidr = [...] }}")));
                }
                RawCache::Table(table) => {
                    let clidr = self.amount(&table.clidr, &f("cache.clidr"))?;
                    let expected = clidr_cache_count(clidr)
                        .map_err(|why| self.err(table.clidr.span(), &f("cache.clidr"), why))?;
                    let mut ccsidr = Vec::new();
                    for value in table.ccsidr.get_ref() {
                        ccsidr.push(self.amount(value, &f("cache.ccsidr"))?);
                    }
                    if ccsidr.len() != expected {
                        return Err(self.err(
                            table.ccsidr.span(),
                            &f("cache.ccsidr"),
                            format!("CLIDR describes {expected} cache(s) but {} CCSIDR value(s) are given", ccsidr.len()),
                        ));
                    }
                    CachePolicy::Custom { clidr, ccsidr }
                }
            };
        }
        // ID_AA64DFR0_EL1.BRPs and .WRPs hold the count minus one, and 0b0000 is reserved:
        // an implementation has 2 to 16 of each.
        if let Some(n) = &raw.breakpoints {
            model.breakpoints = Some(self.int(n, &f("breakpoints"), 2..=16)? as u8);
        }
        if let Some(n) = &raw.watchpoints {
            model.watchpoints = Some(self.int(n, &f("watchpoints"), 2..=16)? as u8);
        }
        if let Some(vl) = &raw.sve_vl {
            // Arm ARM: the SVE vector length is a multiple of 128 bits, at most 2048.
            let n = self.int(vl, &f("sve_vl"), 128..=2048)?;
            if n % 128 != 0 {
                return Err(self.err(
                    vl.span(),
                    &f("sve_vl"),
                    format!("{n} is not a multiple of 128"),
                ));
            }
            model.sve_vl = Some(n as u16);
        }
        if let Some(vl) = &raw.sme_vl {
            // Arm ARM: the SME streaming vector length is a power of two, 128 to 2048 bits.
            let n = self.int(vl, &f("sme_vl"), 128..=2048)?;
            if !(n as u64).is_power_of_two() {
                return Err(self.err(
                    vl.span(),
                    &f("sme_vl"),
                    format!("{n} is not a power of two"),
                ));
            }
            model.sme_vl = Some(n as u16);
        }
        if let Some(spe) = &raw.spe {
            model.spe = *spe.get_ref();
        }
        if let Some(pmu) = &raw.pmu {
            model.pmu = Some(*pmu.get_ref());
        }
        // PMCR_EL0.N is 5 bits; a guest with no event counter would need MDCR_EL2.HPMN
        // = 0, which is CONSTRAINED UNPREDICTABLE without FEAT_HPMN0 (Arm ARM, MDCR_EL2).
        if let Some(n) = &raw.pmu_counters {
            let v = self.int(n, &f("pmu_counters"), 1..=31)?;
            if model.pmu == Some(false) {
                return Err(self.err(
                    n.span(),
                    &f("pmu_counters"),
                    "the VM has no PMU (pmu = false): remove one of the two keys",
                ));
            }
            model.pmu_counters = Some(v as u8);
        }
        // Knobs whose feature is not implemented yet: checked above, so a config stays
        // valid when the feature lands, but refused rather than silently ignored.
        let set: [(&str, Option<Range<usize>>); 5] = [
            ("breakpoints", raw.breakpoints.as_ref().map(Spanned::span)),
            ("watchpoints", raw.watchpoints.as_ref().map(Spanned::span)),
            ("sve_vl", raw.sve_vl.as_ref().map(Spanned::span)),
            ("sme_vl", raw.sme_vl.as_ref().map(Spanned::span)),
            // spe = false is what every guest gets today.
            (
                "spe",
                raw.spe.as_ref().filter(|s| *s.get_ref()).map(Spanned::span),
            ),
        ];
        for (key, span) in set {
            let (Some(span), Some((_, today))) =
                (span, self.not_implemented.iter().find(|(k, _)| *k == key))
            else {
                continue;
            };
            return Err(self.err(
                span,
                &f(key),
                format!("not implemented yet: {today}; remove the key"),
            ));
        }
        // ID register fields the VM sees lower than the hardware (e.g. no AES). The
        // name must be a field the CPU model knows; whether the value is below the
        // hardware's is checked at boot, where the hardware is known.
        for (name, value) in raw.id.iter().flatten() {
            let field = f(&format!("id.{name}"));
            if crate::sysreg::IdField::by_name(name).is_none() {
                return Err(self.err(
                    value.span(),
                    &field,
                    format!("unknown ID register field `{name}`: write it as REGISTER.FIELD, e.g. \"ID_AA64ISAR0_EL1.AES\""),
                ));
            }
            let v = self.int(value, &field, 0..=15)?;
            model.id.push((name.clone(), v as u8));
        }
        Ok(model)
    }
}

/// How many CCSIDR_EL1 values the caches described by `clidr` need, one per cache as
/// CSSELR_EL1 selects them. Arm ARM, CLIDR_EL1.Ctype<n>: 0b000 no cache, 0b001 instruction
/// only, 0b010 data only, 0b011 separate instruction and data, 0b100 unified, others
/// reserved; once a level has no cache, no further-out level has one.
fn clidr_cache_count(clidr: u64) -> Result<usize, String> {
    let ctypes: [Field<u64, CLIDR_EL1::Register>; 7] = [
        CLIDR_EL1::Ctype1,
        CLIDR_EL1::Ctype2,
        CLIDR_EL1::Ctype3,
        CLIDR_EL1::Ctype4,
        CLIDR_EL1::Ctype5,
        CLIDR_EL1::Ctype6,
        CLIDR_EL1::Ctype7,
    ];
    let mut count = 0;
    let mut ended = false;
    for (level, ctype) in (1..).zip(ctypes) {
        match ctype.read(clidr) {
            0 => ended = true,
            _ if ended => {
                return Err(format!(
                    "CLIDR describes a level-{level} cache beyond a level with none"
                ));
            }
            0b001 | 0b010 | 0b100 => count += 1,
            0b011 => count += 2,
            reserved => {
                return Err(format!("Ctype{level} = {reserved:#b} is a reserved value"));
            }
        }
    }
    if count == 0 {
        return Err("CLIDR describes no cache at all; use cache = \"virtual\" instead".into());
    }
    Ok(count)
}
