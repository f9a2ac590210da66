//! HPACK (RFC 7541) as far as a gRPC health check needs: header fields are
//! sent as literals without indexing or Huffman coding; what the server sends
//! is decoded in full (static and dynamic table, Huffman strings).

/// Appends one header field as a literal without indexing, new name, raw strings.
pub fn encode_literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x00);
    encode_int(out, name.len(), 7, 0x00);
    out.extend_from_slice(name.as_bytes());
    encode_int(out, value.len(), 7, 0x00);
    out.extend_from_slice(value.as_bytes());
}

/// An integer with an `n`-bit prefix whose other bits are `flags` (§5.1).
fn encode_int(out: &mut Vec<u8>, mut value: usize, n: u8, flags: u8) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// The decoding side of one connection: its dynamic table lives as long as it does.
#[derive(Debug)]
pub struct Decoder {
    table: Vec<(String, String)>,
    size: usize,
    max: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self {
            table: Vec::new(),
            size: 0,
            max: 4096,
        }
    }
}

impl Decoder {
    /// Decodes one header block into (name, value) pairs.
    pub fn decode(&mut self, mut block: &[u8]) -> Result<Vec<(String, String)>, String> {
        let mut fields = Vec::new();
        while let Some(&first) = block.first() {
            if first & 0x80 != 0 {
                let index = decode_int(&mut block, 7)?;
                fields.push(self.get(index)?);
            } else if first & 0xc0 == 0x40 {
                let field = self.literal(&mut block, 6)?;
                self.insert(field.clone());
                fields.push(field);
            } else if first & 0xe0 == 0x20 {
                let max = decode_int(&mut block, 5)?;
                if max > 4096 {
                    return Err("dynamic table size update above the limit".into());
                }
                self.max = max;
                self.evict(0);
            } else {
                // Without indexing (0000) or never indexed (0001).
                fields.push(self.literal(&mut block, 4)?);
            }
        }
        Ok(fields)
    }

    fn literal(&self, block: &mut &[u8], n: u8) -> Result<(String, String), String> {
        let index = decode_int(block, n)?;
        let name = match index {
            0 => decode_string(block)?,
            i => self.get(i)?.0,
        };
        Ok((name, decode_string(block)?))
    }

    fn get(&self, index: usize) -> Result<(String, String), String> {
        if index == 0 {
            return Err("header index 0".into());
        }
        if let Some((name, value)) = STATIC.get(index - 1) {
            return Ok((name.to_string(), value.to_string()));
        }
        self.table
            .get(index - 1 - STATIC.len())
            .cloned()
            .ok_or_else(|| format!("header index {index} out of range"))
    }

    fn insert(&mut self, field: (String, String)) {
        let size = field.0.len() + field.1.len() + 32;
        self.evict(size);
        if size <= self.max {
            self.size += size;
            self.table.insert(0, field);
        }
    }

    /// Drops the oldest entries until `room` more fits.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max {
            match self.table.pop() {
                Some((n, v)) => self.size -= n.len() + v.len() + 32,
                None => break,
            }
        }
    }
}

fn decode_int(block: &mut &[u8], n: u8) -> Result<usize, String> {
    let (&first, rest) = block.split_first().ok_or("truncated header block")?;
    *block = rest;
    let max = (1usize << n) - 1;
    let mut value = first as usize & max;
    if value < max {
        return Ok(value);
    }
    let mut shift = 0;
    loop {
        let (&b, rest) = block.split_first().ok_or("truncated header block")?;
        *block = rest;
        if shift > 28 {
            return Err("header integer too large".into());
        }
        value += ((b & 0x7f) as usize) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
}

fn decode_string(block: &mut &[u8]) -> Result<String, String> {
    let huffman = block.first().is_some_and(|b| b & 0x80 != 0);
    let len = decode_int(block, 7)?;
    if block.len() < len {
        return Err("truncated header block".into());
    }
    let (raw, rest) = block.split_at(len);
    *block = rest;
    let bytes = match huffman {
        true => huffman_decode(raw)?,
        false => raw.to_vec(),
    };
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Decodes a Huffman-coded string (Appendix B's code is canonical: codes of
/// one length are consecutive, in symbol order, so the lengths define it).
fn huffman_decode(raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(raw.len() * 8 / 5);
    let (mut code, mut len) = (0u32, 0u8);
    for byte in raw {
        for bit in (0..8).rev() {
            code = (code << 1) | ((byte >> bit) & 1) as u32;
            len += 1;
            if let Some(symbol) = huffman_symbol(code, len) {
                out.push(symbol);
                (code, len) = (0, 0);
            } else if len >= 30 {
                return Err("invalid Huffman code".into());
            }
        }
    }
    // What is left must be a prefix of EOS (all ones), shorter than a byte.
    if len >= 8 || code != (1u32 << len) - 1 {
        return Err("invalid Huffman padding".into());
    }
    Ok(out)
}

/// The symbol whose code is `code` of `len` bits, if any.
fn huffman_symbol(code: u32, len: u8) -> Option<u8> {
    // The first code of each length follows from the counts of the shorter ones.
    let mut first = 0u32;
    for l in 5..=len {
        let count = HUFFMAN_LENGTHS.iter().filter(|&&x| x == l).count() as u32;
        if l == len {
            let nth = code.checked_sub(first).filter(|n| *n < count)? as usize;
            return HUFFMAN_LENGTHS
                .iter()
                .enumerate()
                .filter(|(_, &x)| x == l)
                .nth(nth)
                .map(|(symbol, _)| symbol as u8);
        }
        first = (first + count) << 1;
    }
    None
}

/// Code lengths of symbols 0–255 (RFC 7541 Appendix B; EOS has 30 bits).
const HUFFMAN_LENGTHS: [u8; 256] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
];

/// The static table (Appendix A).
const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn huffman_strings_decode_as_in_the_rfc() {
        // RFC 7541 C.4.1 and C.6.1.
        assert_eq!(
            huffman_decode(&hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff")).unwrap(),
            b"www.example.com"
        );
        assert_eq!(huffman_decode(&hex("6402")).unwrap(), b"302");
        assert_eq!(huffman_decode(&hex("aec3 771a 4b")).unwrap(), b"private");
        assert!(huffman_decode(&hex("00")).is_err(), "padding must be ones");
    }

    #[test]
    fn request_blocks_decode_with_the_dynamic_table() {
        // RFC 7541 C.4: three requests with Huffman coding and indexing.
        let mut d = Decoder::default();
        let first = d
            .decode(&hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"))
            .unwrap();
        assert_eq!(
            first,
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com")
            ])
        );
        let second = d.decode(&hex("8286 84be 5886 a8eb 1064 9cbf")).unwrap();
        assert_eq!(
            second,
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache")
            ])
        );
        let third = d
            .decode(&hex(
                "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
            ))
            .unwrap();
        assert_eq!(
            third,
            pairs(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value")
            ])
        );
    }

    #[test]
    fn literals_round_trip() {
        let mut block = Vec::new();
        encode_literal(&mut block, ":path", "/grpc.health.v1.Health/Check");
        let long = "x".repeat(300);
        encode_literal(&mut block, "te", &long);
        assert_eq!(
            Decoder::default().decode(&block).unwrap(),
            pairs(&[(":path", "/grpc.health.v1.Health/Check"), ("te", &long)])
        );
    }
}
