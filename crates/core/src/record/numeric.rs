//! PostgreSQL's binary `numeric` format (ndigits, weight, sign, dscale, base-10000 digits) to
//! and from decimal text.

use bytes::{BufMut, BytesMut};

const NEGATIVE: u16 = 0x4000;
const NAN: u16 = 0xC000;

/// Renders a binary `numeric` value as text; `None` when the bytes are not a numeric.
pub fn decode(bytes: &[u8]) -> Option<String> {
    let word = |i: usize| bytes.get(i * 2..i * 2 + 2).map(|w| i16::from_be_bytes([w[0], w[1]]));
    let (ndigits, weight, sign, dscale) = (word(0)?, word(1)? as i32, word(2)? as u16, word(3)?);
    let (ndigits, dscale) = (usize::try_from(ndigits).ok()?, usize::try_from(dscale).ok()?);
    if bytes.len() != 8 + ndigits * 2 {
        return None;
    }
    match sign {
        NAN => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        0 | NEGATIVE => {}
        _ => return None,
    }
    let digit = |i: i32| if i >= 0 && (i as usize) < ndigits { word(4 + i as usize).unwrap_or(0) } else { 0 };
    let mut out = String::new();
    if sign == NEGATIVE {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for i in 0..=weight {
            let d = digit(i);
            if i == 0 { out.push_str(&d.to_string()) } else { out.push_str(&format!("{d:04}")) }
        }
    }
    if dscale > 0 {
        out.push('.');
        let mut frac = String::new();
        let mut i = weight + 1;
        while frac.len() < dscale {
            frac.push_str(&format!("{:04}", digit(i)));
            i += 1;
        }
        frac.truncate(dscale);
        out.push_str(&frac);
    }
    Some(out)
}

/// Appends the binary `numeric` encoding of decimal `text` (`-12.340`, `1e5`, `NaN`); `None`
/// when the text is not a decimal number.
pub fn encode(text: &str, out: &mut BytesMut) -> Option<()> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("nan") {
        out.put_slice(&[0, 0, 0, 0, 0xC0, 0, 0, 0]);
        return Some(());
    }
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (unsigned, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int_part.is_empty() && frac_part.is_empty()
        || !int_part.bytes().chain(frac_part.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // All digits, and where the decimal point falls among them after the exponent.
    let digits: Vec<u8> = int_part.bytes().chain(frac_part.bytes()).map(|b| b - b'0').collect();
    let point = int_part.len() as i32 + exponent;
    let dscale = (frac_part.len() as i32 - exponent).max(0);
    // Group into base-10000 words aligned on the decimal point.
    let first_group = point.div_euclid(4) + if point.rem_euclid(4) == 0 { 0 } else { 1 };
    let lead = first_group * 4 - point;
    let mut words = Vec::new();
    let mut chunk = Vec::with_capacity(4);
    chunk.extend(std::iter::repeat_n(0, lead.max(0) as usize));
    let skip = (-lead).max(0) as usize;
    for d in digits.iter().skip(skip) {
        chunk.push(*d);
        if chunk.len() == 4 {
            words.push(chunk.iter().fold(0i16, |acc, d| acc * 10 + *d as i16));
            chunk.clear();
        }
    }
    if !chunk.is_empty() {
        chunk.resize(4, 0);
        words.push(chunk.iter().fold(0i16, |acc, d| acc * 10 + *d as i16));
    }
    let mut weight = first_group - 1;
    while words.first() == Some(&0) {
        words.remove(0);
        weight -= 1;
    }
    while words.last() == Some(&0) {
        words.pop();
    }
    if words.is_empty() {
        weight = 0;
    }
    let sign = if negative && !words.is_empty() { NEGATIVE } else { 0 };
    out.put_i16(i16::try_from(words.len()).ok()?);
    out.put_i16(i16::try_from(weight).ok()?);
    out.put_u16(sign);
    out.put_i16(i16::try_from(dscale).ok()?);
    for w in words {
        out.put_i16(w);
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(ndigits: i16, weight: i16, sign: u16, dscale: i16, digits: &[i16]) -> Vec<u8> {
        let mut v = Vec::new();
        for w in [ndigits, weight, sign as i16, dscale].into_iter().chain(digits.iter().copied()) {
            v.extend_from_slice(&w.to_be_bytes());
        }
        v
    }

    #[test]
    fn renders_decimals() {
        assert_eq!(decode(&raw(2, 0, 0, 2, &[123, 4500])).as_deref(), Some("123.45"));
        assert_eq!(decode(&raw(1, 1, 0x4000, 0, &[12])).as_deref(), Some("-120000"));
        assert_eq!(decode(&raw(1, -1, 0, 3, &[50])).as_deref(), Some("0.005"));
        assert_eq!(decode(&raw(0, 0, 0, 0, &[])).as_deref(), Some("0"));
        assert_eq!(decode(&raw(0, 0, 0xC000, 0, &[])).as_deref(), Some("NaN"));
        assert_eq!(decode(&raw(3, 0, 0, 0, &[1])), None, "truncated digits");
    }

    #[test]
    fn encodes_what_it_decodes() {
        for text in
            ["123.45", "-120000", "0.005", "0", "NaN", "99999999999999999999999999.9999999999", "-0.1000", "10000"]
        {
            let mut out = BytesMut::new();
            encode(text, &mut out).expect(text);
            assert_eq!(decode(&out).as_deref(), Some(text));
        }
        let mut out = BytesMut::new();
        encode("1.5e3", &mut out).expect("exponent");
        assert_eq!(decode(&out).as_deref(), Some("1500"));
        assert!(encode("12a", &mut BytesMut::new()).is_none());
        assert!(encode("", &mut BytesMut::new()).is_none());
    }
}
