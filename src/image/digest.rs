//! Content digests: parsing `sha256:<hex>` and hashing while reading.

use std::fmt;
use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

use super::error::{ImageError, Result};

/// A validated `sha256:<64 lowercase hex>` digest. Only sha256 is supported; the
/// hex part is safe to use as a file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Digest {
    hex: String,
}

impl Digest {
    pub(crate) fn parse(s: &str) -> Result<Digest> {
        let invalid = |reason| ImageError::InvalidDigest {
            digest: s.to_string(),
            reason,
        };
        let (algorithm, hex) = s
            .split_once(':')
            .ok_or_else(|| invalid("expected <algorithm>:<hex>"))?;
        if algorithm != "sha256" {
            return Err(invalid("only sha256 digests are supported"));
        }
        if !is_sha256_hex(hex) {
            return Err(invalid("expected 64 lowercase hexadecimal digits"));
        }
        Ok(Digest {
            hex: hex.to_string(),
        })
    }

    pub(crate) fn of(bytes: &[u8]) -> Digest {
        Digest {
            hex: hex::encode(Sha256::digest(bytes)),
        }
    }

    pub(crate) fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks what was read against what the descriptor promised.
pub(crate) fn verify(
    expected: &Digest,
    expected_size: u64,
    actual: &Digest,
    size: u64,
) -> Result<()> {
    if size != expected_size {
        return Err(ImageError::SizeMismatch {
            digest: expected.to_string(),
            expected: expected_size,
            actual: size,
        });
    }
    if actual != expected {
        return Err(ImageError::DigestMismatch {
            digest: expected.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

/// A reader that hashes and counts every byte passing through it.
pub(crate) struct Digester<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Digester<R> {
    pub(crate) fn new(inner: R) -> Self {
        Digester {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The reader back, with the digest and size of what went through.
    pub(crate) fn finish(self) -> (R, Digest, u64) {
        let digest = Digest {
            hex: hex::encode(self.hasher.finalize()),
        };
        (self.inner, digest, self.count)
    }
}

impl<R: Read> Read for Digester<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_sha256_only() {
        let hex = "a".repeat(64);
        assert_eq!(Digest::parse(&format!("sha256:{hex}")).unwrap().hex(), hex);
        assert!(Digest::parse(&format!("sha512:{hex}")).is_err());
        assert!(Digest::parse("sha256:../../etc/passwd").is_err());
        assert!(Digest::parse(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(Digest::parse(&hex).is_err());
    }

    #[test]
    fn digester_matches_one_shot_hash() {
        let data = b"peapod layer bytes".repeat(1000);
        let mut reader = Digester::new(&data[..]);
        io::copy(&mut reader, &mut io::sink()).unwrap();
        let (_, digest, size) = reader.finish();
        assert_eq!(digest, Digest::of(&data));
        assert_eq!(size, data.len() as u64);
        assert!(verify(&digest, size, &digest, size).is_ok());
        assert!(matches!(
            verify(&Digest::of(b"x"), size, &digest, size),
            Err(ImageError::DigestMismatch { .. })
        ));
    }
}
