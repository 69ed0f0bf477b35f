//! A device's stored inventory read back to compare a new report with.
//!
//! Its programs are borrowed from the stored bytes instead of decoded into
//! strings of their own: a report is compared with thousands of them, and
//! those copies were a large share of the server's allocations in a
//! morning's storm of changed reports (BENCHMARKS.md). Everything else is
//! decoded by prost as usual. The bytes are the server's own encoding of a
//! validated inventory, yet they are read with every bound checked.

use prost::Message;
use schoolfleet_proto::v1::Inventory;

use super::programs::{ProgramKey, Programs};

/// `Inventory.software`, and the fields of `SoftwarePackage` a program is
/// keyed by (proto/schoolfleet/v1/common.proto).
const SOFTWARE_FIELD: u32 = 8;
const PACKAGE_NAME: u32 = 1;
const PACKAGE_VERSION: u32 = 2;
const PACKAGE_SOURCE: u32 = 3;
const PACKAGE_ARCHITECTURE: u32 = 4;

/// A stored inventory: everything but its programs decoded (`software` is
/// left empty), and its programs as borrowed keys.
#[derive(Debug)]
pub struct PreviousInventory<'a> {
    pub inventory: Inventory,
    pub programs: Programs<'a>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("stored inventory ends inside a field")]
    Truncated,
    #[error("stored inventory has a malformed field")]
    Malformed,
    #[error("stored program name is not UTF-8")]
    NotUtf8(#[from] std::str::Utf8Error),
    #[error("stored inventory cannot be decoded: {0}")]
    Decode(#[from] prost::DecodeError),
}

/// Reads an encoded `Inventory`.
pub fn read(bytes: &[u8]) -> Result<PreviousInventory<'_>, ReadError> {
    let mut inventory = Inventory::default();
    let mut keys = Vec::new();
    let mut fields = Fields { rest: bytes };
    while !fields.rest.is_empty() {
        let before = fields.rest;
        match fields.next()? {
            (SOFTWARE_FIELD, Value::Bytes(package)) => keys.push(program(package)?),
            // Decoding a message field by field is decoding it whole
            // (protobuf's merge rules).
            _ => inventory.merge(&before[..before.len() - fields.rest.len()])?,
        }
    }
    Ok(PreviousInventory {
        inventory,
        programs: Programs::new(keys),
    })
}

/// A `SoftwarePackage`'s key fields, borrowed; a field given twice counts
/// with its last value, as in protobuf.
fn program(bytes: &[u8]) -> Result<ProgramKey<'_>, ReadError> {
    let mut key = [""; 4];
    let mut fields = Fields { rest: bytes };
    while !fields.rest.is_empty() {
        let (number, value) = fields.next()?;
        let slot = match number {
            PACKAGE_SOURCE => 0,
            PACKAGE_NAME => 1,
            PACKAGE_ARCHITECTURE => 2,
            PACKAGE_VERSION => 3,
            _ => continue,
        };
        let Value::Bytes(text) = value else {
            return Err(ReadError::Malformed);
        };
        key[slot] = std::str::from_utf8(text)?;
    }
    Ok(key)
}

/// The fields of one encoded message, in order.
struct Fields<'a> {
    rest: &'a [u8],
}

enum Value<'a> {
    /// A length-delimited value: a string, bytes or an embedded message.
    Bytes(&'a [u8]),
    /// A number (varint or fixed width).
    Number,
}

impl<'a> Fields<'a> {
    fn next(&mut self) -> Result<(u32, Value<'a>), ReadError> {
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| ReadError::Malformed)?;
        let value = match key & 7 {
            0 => self.varint().map(|_| Value::Number)?,
            1 => self.take(8).map(|_| Value::Number)?,
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| ReadError::Malformed)?;
                Value::Bytes(self.take(len)?)
            }
            5 => self.take(4).map(|_| Value::Number)?,
            // Groups (3, 4) are not used by proto3; 6 and 7 do not exist.
            _ => return Err(ReadError::Malformed),
        };
        Ok((number, value))
    }

    fn varint(&mut self) -> Result<u64, ReadError> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let (&byte, rest) = self.rest.split_first().ok_or(ReadError::Truncated)?;
            self.rest = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(ReadError::Malformed)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], ReadError> {
        if len > self.rest.len() {
            return Err(ReadError::Truncated);
        }
        let (value, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schoolfleet_proto::v1::{
        CollectorError, Disk, Hardware, NetworkInterface, SoftwarePackage, SystemInfo,
    };

    fn package(name: &str, version: &str, source: &str, arch: &str) -> SoftwarePackage {
        SoftwarePackage {
            name: name.into(),
            version: version.into(),
            source: source.into(),
            architecture: arch.into(),
            publisher: "Mozilla Foundation".into(),
            install_date: "2026-01-02".into(),
        }
    }

    fn inventory() -> Inventory {
        Inventory {
            system: Some(SystemInfo {
                hostname: "kus012-pc07".into(),
                uptime_seconds: 300_000,
                ..Default::default()
            }),
            hardware: Some(Hardware {
                vendor: "LENOVO".into(),
                memory_total_bytes: 8 << 30,
                cpu_logical_cores: 8,
                ..Default::default()
            }),
            disks: vec![Disk {
                name: "nvme0n1".into(),
                size_bytes: 512 << 30,
                system: true,
                ..Default::default()
            }],
            network_interfaces: vec![NetworkInterface {
                name: "eth0".into(),
                ip_addresses: vec!["10.1.2.3/24".into()],
                ..Default::default()
            }],
            software: vec![
                package("Mozilla Firefox", "140.1", "msi", "x64"),
                package("7-Zip", "24.08", "msi", ""),
                package("Übersetzer \"Pro\"", "", "msi", "x86"),
                package("Mozilla Firefox", "140.1", "msi", "x64"),
            ],
            collector_errors: vec![CollectorError {
                collector: "disks".into(),
                message: "timed out".into(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn reads_what_prost_decodes_with_programs_borrowed() {
        let full = inventory();
        let bytes = full.encode_to_vec();
        let previous = read(&bytes).unwrap();
        assert_eq!(previous.programs, Programs::of(&full.software));
        assert_eq!(previous.programs.as_slice().len(), 3, "one duplicate");
        let without_software = Inventory {
            software: Vec::new(),
            ..full
        };
        assert_eq!(previous.inventory, without_software);
        // Borrowed from the stored bytes, not copied.
        let range = bytes.as_ptr_range();
        assert!(
            previous
                .programs
                .as_slice()
                .iter()
                .flatten()
                .filter(|s| !s.is_empty())
                .all(|s| range.contains(&s.as_ptr()))
        );
    }

    #[test]
    fn an_empty_inventory_reads_as_empty() {
        let previous = read(&[]).unwrap();
        assert_eq!(previous.inventory, Inventory::default());
        assert!(previous.programs.as_slice().is_empty());
    }

    #[test]
    fn broken_bytes_are_an_error_not_a_panic() {
        let bytes = inventory().encode_to_vec();
        for cut in [1, 7, bytes.len() / 2, bytes.len() - 1] {
            assert!(read(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // A program name that is not UTF-8: field 8 holding field 1.
        let bad = [0x42, 0x03, 0x0a, 0x01, 0xff];
        assert!(matches!(read(&bad), Err(ReadError::NotUtf8(_))));
        // An eleven-byte varint.
        assert!(matches!(read(&[0xff; 11]), Err(ReadError::Malformed)));
    }
}
