//! The config file as `toml` + serde read it: every value keeps its span so that the
//! validation in `validate.rs` can point at it. Unknown keys are refused here.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor, value::MapAccessDeserializer};
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSystem {
    pub(crate) console: Option<Spanned<RawConsole>>,
    #[serde(default)]
    pub(crate) vm: Vec<Spanned<RawVm>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConsole {
    pub(crate) switch_key: Option<Spanned<String>>,
    pub(crate) switch_presses: Option<Spanned<i64>>,
    pub(crate) input: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVm {
    pub(crate) name: Spanned<String>,
    pub(crate) vcpus: Option<Spanned<i64>>,
    pub(crate) cpus: Option<Spanned<Vec<Spanned<i64>>>>,
    pub(crate) exclusive: Option<Spanned<bool>>,
    pub(crate) priority: Option<Spanned<i64>>,
    pub(crate) timeslice: Option<Spanned<Amount>>,
    pub(crate) memory: Spanned<Amount>,
    pub(crate) base: Option<Spanned<Amount>>,
    pub(crate) kernel: Spanned<RawKernel>,
    pub(crate) initrd: Option<Spanned<String>>,
    pub(crate) bootargs: Option<Spanned<String>>,
    pub(crate) dtb: Option<Spanned<String>>,
    pub(crate) console: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) passthrough: Vec<Spanned<RawPassthrough>>,
    pub(crate) cpu: Option<Spanned<RawCpu>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPassthrough {
    pub(crate) base: Spanned<Amount>,
    pub(crate) size: Spanned<Amount>,
    #[serde(default)]
    pub(crate) irqs: Vec<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCpu {
    pub(crate) cache: Option<Spanned<RawCache>>,
    pub(crate) breakpoints: Option<Spanned<i64>>,
    pub(crate) watchpoints: Option<Spanned<i64>>,
    pub(crate) sve_vl: Option<Spanned<i64>>,
    pub(crate) sme_vl: Option<Spanned<i64>>,
    pub(crate) spe: Option<Spanned<bool>>,
    pub(crate) pmu: Option<Spanned<bool>>,
    pub(crate) pmu_counters: Option<Spanned<i64>>,
    /// `[vm.cpu.id]`: ID register fields to lower, "REGISTER.FIELD" = value.
    pub(crate) id: Option<alloc::collections::BTreeMap<String, Spanned<i64>>>,
}

/// An address or a size: a TOML integer, or a string with an optional K/M/G/T suffix.
/// The string is interpreted by validation so its errors can name the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Amount {
    Integer(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AmountVisitor;
        impl Visitor<'_> for AmountVisitor {
            type Value = Amount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a size string such as \"256M\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Amount, E> {
                Ok(Amount::Integer(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Amount, E> {
                i64::try_from(v)
                    .map(Amount::Integer)
                    .map_err(|_| E::custom("integer too large"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Amount, E> {
                Ok(Amount::Text(v.into()))
            }
        }
        deserializer.deserialize_any(AmountVisitor)
    }
}

/// `kernel = "path"` or `kernel = { path = ..., format = ..., load = ..., entry = ... }`.
#[derive(Debug)]
pub(crate) enum RawKernel {
    Path(String),
    Table(RawKernelTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKernelTable {
    pub(crate) path: Spanned<String>,
    pub(crate) format: Option<Spanned<String>>,
    pub(crate) load: Option<Spanned<Amount>>,
    pub(crate) entry: Option<Spanned<Amount>>,
}

impl<'de> Deserialize<'de> for RawKernel {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KernelVisitor;
        impl<'de> Visitor<'de> for KernelVisitor {
            type Value = RawKernel;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a path string or a table { path = ..., format = ... }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawKernel, E> {
                Ok(RawKernel::Path(v.into()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawKernel, A::Error> {
                RawKernelTable::deserialize(MapAccessDeserializer::new(map)).map(RawKernel::Table)
            }
        }
        deserializer.deserialize_any(KernelVisitor)
    }
}

/// `cache = "virtual" | "host" | { clidr = ..., ccsidr = [...] }`.
#[derive(Debug)]
pub(crate) enum RawCache {
    Named(String),
    Table(RawCacheTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCacheTable {
    pub(crate) clidr: Spanned<Amount>,
    pub(crate) ccsidr: Spanned<Vec<Spanned<Amount>>>,
}

impl<'de> Deserialize<'de> for RawCache {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CacheVisitor;
        impl<'de> Visitor<'de> for CacheVisitor {
            type Value = RawCache;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"virtual\", \"host\" or a table { clidr = ..., ccsidr = [...] }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawCache, E> {
                Ok(RawCache::Named(v.into()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawCache, A::Error> {
                RawCacheTable::deserialize(MapAccessDeserializer::new(map)).map(RawCache::Table)
            }
        }
        deserializer.deserialize_any(CacheVisitor)
    }
}
