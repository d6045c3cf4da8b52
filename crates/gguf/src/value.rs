//! Metadata values and the ordered key/value table with typed accessors.

use std::collections::HashMap;
use std::fmt;

use crate::error::{GgufError, Result};

/// On-disk value type ids (`enum gguf_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    pub fn from_id(id: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    pub fn id(self) -> u32 {
        self as u32
    }

    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }

    /// The fewest bytes a value of this type occupies on disk; used to bound array lengths by
    /// the bytes left in the file before allocating.
    pub(crate) fn min_encoded_size(self) -> u64 {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 => 8,
            String => 8,
            // element type id + count
            Array => 12,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    /// On disk an array has one element type; the reader guarantees every element here has it.
    Array(Vec<Value>),
}

impl Value {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F32(_) => ValueType::F32,
            Value::F64(_) => ValueType::F64,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
        }
    }

    /// A readable type description such as `u32`, `array<string>` or `array<array<i32>>`.
    pub fn type_description(&self) -> String {
        match self {
            Value::Array(items) => match items.first() {
                Some(first) => format!("array<{}>", first.type_description()),
                None => "array<>".to_string(),
            },
            other => other.value_type().name().to_string(),
        }
    }

    /// Any integer value widened to i128, so callers can range-check once for every width.
    pub fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            _ => return None,
        })
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// F32 as is, F64 narrowed (hyperparameters are sometimes written as f64).
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::U8(v) => write!(f, "{v}"),
            Value::I8(v) => write!(f, "{v}"),
            Value::U16(v) => write!(f, "{v}"),
            Value::I16(v) => write!(f, "{v}"),
            Value::U32(v) => write!(f, "{v}"),
            Value::I32(v) => write!(f, "{v}"),
            Value::U64(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::F32(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::String(s) => write!(f, "{s:?}"),
            Value::Array(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// The key/value table of a GGUF file, in file order, with lookups by key.
#[derive(Clone, Debug, Default)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
    index: HashMap<String, usize>,
}

impl PartialEq for Metadata {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

fn wrong_type(key: &str, expected: &'static str, found: &Value) -> GgufError {
    GgufError::WrongType {
        key: key.to_string(),
        expected,
        found: found.type_description(),
    }
}

fn int_as<T: TryFrom<i128>>(key: &str, v: &Value, expected: &'static str) -> Result<T> {
    let i = v.as_integer().ok_or_else(|| wrong_type(key, expected, v))?;
    T::try_from(i).map_err(|_| GgufError::OutOfRange {
        key: key.to_string(),
        value: i.to_string(),
        expected,
    })
}

impl Metadata {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry; returns `false` (and changes nothing) when the key is already present.
    pub fn insert(&mut self, key: String, value: Value) -> bool {
        if self.index.contains_key(&key) {
            return false;
        }
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push((key, value));
        true
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// Entries in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn require(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| GgufError::MissingKey {
            key: key.to_string(),
        })
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| wrong_type(key, "string", v))
    }

    pub fn get_u32(&self, key: &str) -> Result<u32> {
        int_as(key, self.require(key)?, "u32")
    }

    pub fn get_u64(&self, key: &str) -> Result<u64> {
        int_as(key, self.require(key)?, "u64")
    }

    pub fn get_i64(&self, key: &str) -> Result<i64> {
        int_as(key, self.require(key)?, "i64")
    }

    pub fn get_f32(&self, key: &str) -> Result<f32> {
        let v = self.require(key)?;
        v.as_f32().ok_or_else(|| wrong_type(key, "f32", v))
    }

    pub fn get_bool(&self, key: &str) -> Result<bool> {
        match self.require(key)? {
            Value::Bool(b) => Ok(*b),
            other => Err(wrong_type(key, "bool", other)),
        }
    }

    fn get_array(&self, key: &str, expected: &'static str) -> Result<&[Value]> {
        let v = self.require(key)?;
        v.as_array().ok_or_else(|| wrong_type(key, expected, v))
    }

    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        const EXPECTED: &str = "array<string>";
        let items = self.get_array(key, EXPECTED)?;
        let whole = self.require(key)?;
        items
            .iter()
            .map(|i| i.as_str().ok_or_else(|| wrong_type(key, EXPECTED, whole)))
            .collect()
    }

    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>> {
        const EXPECTED: &str = "array<f32>";
        let items = self.get_array(key, EXPECTED)?;
        let whole = self.require(key)?;
        items
            .iter()
            .map(|i| i.as_f32().ok_or_else(|| wrong_type(key, EXPECTED, whole)))
            .collect()
    }

    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>> {
        let items = self.get_array(key, "array<i32>")?;
        items.iter().map(|i| int_as(key, i, "array<i32>")).collect()
    }

    pub fn get_u32_array(&self, key: &str) -> Result<Vec<u32>> {
        let items = self.get_array(key, "array<u32>")?;
        items.iter().map(|i| int_as(key, i, "array<u32>")).collect()
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        self.get(key).map(|_| self.get_str(key)).transpose()
    }

    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>> {
        self.get(key).map(|_| self.get_u32(key)).transpose()
    }

    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        self.get(key).map(|_| self.get_u64(key)).transpose()
    }

    pub fn opt_i64(&self, key: &str) -> Result<Option<i64>> {
        self.get(key).map(|_| self.get_i64(key)).transpose()
    }

    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        self.get(key).map(|_| self.get_f32(key)).transpose()
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        self.get(key).map(|_| self.get_bool(key)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md() -> Metadata {
        let mut m = Metadata::new();
        m.insert("a.u8".into(), Value::U8(7));
        m.insert("a.i64".into(), Value::I64(-3));
        m.insert("a.big".into(), Value::U64(1 << 40));
        m.insert("a.f64".into(), Value::F64(0.5));
        m.insert("a.s".into(), Value::String("x".into()));
        m.insert(
            "a.strs".into(),
            Value::Array(vec![Value::String("p".into()), Value::String("q".into())]),
        );
        m.insert(
            "a.ints".into(),
            Value::Array(vec![Value::I32(-1), Value::I32(2)]),
        );
        m.insert("a.flag".into(), Value::Bool(true));
        m
    }

    #[test]
    fn integer_widths_convert_when_they_fit() {
        let m = md();
        assert_eq!(m.get_u32("a.u8").unwrap(), 7);
        assert_eq!(m.get_u64("a.u8").unwrap(), 7);
        assert_eq!(m.get_i64("a.i64").unwrap(), -3);
        assert_eq!(m.get_u64("a.big").unwrap(), 1 << 40);
        let e = m.get_u32("a.big").unwrap_err();
        assert!(
            matches!(e, GgufError::OutOfRange { ref key, .. } if key == "a.big"),
            "{e}"
        );
        let e = m.get_u64("a.i64").unwrap_err();
        assert_eq!(
            e.to_string(),
            "metadata key `a.i64`: value -3 does not fit in u64"
        );
    }

    #[test]
    fn wrong_types_and_missing_keys_are_named() {
        let m = md();
        assert_eq!(m.get_f32("a.f64").unwrap(), 0.5);
        assert_eq!(
            m.get_str("a.u8").unwrap_err().to_string(),
            "metadata key `a.u8`: expected string, found u8"
        );
        assert_eq!(
            m.get_u32_array("a.strs").unwrap_err().to_string(),
            "metadata key `a.strs`: expected array<u32>, found string"
        );
        assert_eq!(
            m.get_str_array("a.ints").unwrap_err().to_string(),
            "metadata key `a.ints`: expected array<string>, found array<i32>"
        );
        assert_eq!(
            m.get_str("nope").unwrap_err().to_string(),
            "metadata key `nope` is missing"
        );
        assert_eq!(m.get_str_array("a.strs").unwrap(), vec!["p", "q"]);
        assert_eq!(m.get_i32_array("a.ints").unwrap(), vec![-1, 2]);
        assert!(m.get_u32_array("a.ints").is_err());
    }

    #[test]
    fn optional_getters_distinguish_absent_from_wrong() {
        let m = md();
        assert_eq!(m.opt_u32("absent").unwrap(), None);
        assert_eq!(m.opt_bool("a.flag").unwrap(), Some(true));
        assert!(matches!(
            m.opt_bool("a.s"),
            Err(GgufError::WrongType { .. })
        ));
        assert_eq!(m.opt_str("a.s").unwrap(), Some("x"));
    }

    #[test]
    fn iteration_keeps_insertion_order_and_rejects_duplicates() {
        let mut m = md();
        assert!(!m.insert("a.u8".into(), Value::U8(1)));
        let keys: Vec<_> = m.iter().map(|(k, _)| k).collect();
        assert_eq!(keys[0], "a.u8");
        assert_eq!(keys[7], "a.flag");
        assert_eq!(m.len(), 8);
        assert_eq!(m.get("a.u8"), Some(&Value::U8(7)));
    }
}
