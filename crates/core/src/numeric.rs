//! Decoding of PostgreSQL's binary `numeric` format to its decimal text.

/// Renders a binary `numeric` value (ndigits, weight, sign, dscale, base-10000 digits) as text.
pub fn decode(bytes: &[u8]) -> String {
    let word = |i: usize| bytes.get(i * 2..i * 2 + 2).map_or(0, |w| i16::from_be_bytes([w[0], w[1]]));
    let (ndigits, weight, sign, dscale) =
        (word(0).max(0) as usize, word(1) as i32, word(2) as u16, word(3).max(0) as usize);
    match sign {
        0xC000 => return "NaN".into(),
        0xD000 => return "Infinity".into(),
        0xF000 => return "-Infinity".into(),
        _ => {}
    }
    let digit = |i: i32| if i >= 0 && (i as usize) < ndigits { word(4 + i as usize) } else { 0 };
    let mut out = String::new();
    if sign == 0x4000 {
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
    out
}

#[cfg(test)]
mod tests {
    fn encode(ndigits: i16, weight: i16, sign: u16, dscale: i16, digits: &[i16]) -> Vec<u8> {
        let mut v = Vec::new();
        for w in [ndigits, weight, sign as i16, dscale].into_iter().chain(digits.iter().copied()) {
            v.extend_from_slice(&w.to_be_bytes());
        }
        v
    }

    #[test]
    fn renders_decimals() {
        assert_eq!(super::decode(&encode(2, 0, 0, 2, &[123, 4500])), "123.45");
        assert_eq!(super::decode(&encode(1, 1, 0x4000, 0, &[12])), "-120000");
        assert_eq!(super::decode(&encode(1, -1, 0, 3, &[50])), "0.005");
        assert_eq!(super::decode(&encode(0, 0, 0, 0, &[])), "0");
        assert_eq!(super::decode(&encode(0, 0, 0xC000, 0, &[])), "NaN");
    }
}
