//! Resource quantities (`500m`, `2`, `8Gi`, `1G`) as numbers: CPU in millicores, the rest in units.

/// A quantity in thousandths of its unit (millicores for CPU, milli-bytes for memory).
pub fn milli(text: &str) -> Option<u128> {
    let text = text.trim();
    let digits = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let mut fraction = fraction.to_string();
    fraction.truncate(3);
    while fraction.len() < 3 {
        fraction.push('0');
    }
    let base: u128 = format!("{}{fraction}", if whole.is_empty() { "0" } else { whole }).parse().ok()?;
    let factor: u128 = match suffix {
        "m" => return Some(base / 1000),
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return None,
    };
    Some(base * factor)
}

#[cfg(test)]
mod tests {
    use super::milli;

    #[test]
    fn reads_cpu_and_memory() {
        assert_eq!(milli("500m"), Some(500));
        assert_eq!(milli("2"), Some(2000));
        assert_eq!(milli("0.5"), Some(500));
        assert_eq!(milli("1Gi"), Some(1000 << 30));
        assert_eq!(milli("x"), None);
        assert_eq!(milli("1Q"), None);
    }
}
