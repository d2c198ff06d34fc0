//! String formats as kube-openapi's strfmt registry checks them. Formats the apiserver supports
//! but this module does not implement (uri, email, isbn*, creditcard, ssn, hexcolor, rgbcolor,
//! bsonobjectid, duration) are accepted unchecked rather than refused.

use std::net::Ipv6Addr;
use std::sync::LazyLock;

use regex::Regex;

static BASE64: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$")
        .expect("base64 pattern")
});
static TIME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$")
        .expect("time pattern")
});
static HOSTNAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([a-zA-Z0-9\p{S}\p{L}]((-?[a-zA-Z0-9\p{S}\p{L}]{0,62})?)|([a-zA-Z0-9\p{S}\p{L}](([a-zA-Z0-9-\p{S}\p{L}]{0,61}[a-zA-Z0-9\p{S}\p{L}])?)(\.)){1,}([a-zA-Z\p{L}]){2,63})$")
        .expect("hostname pattern")
});
static UUID: LazyLock<[Regex; 4]> = LazyLock::new(|| {
    [
        r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$",
        r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$",
        r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$",
        r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$",
    ]
    .map(|p| Regex::new(p).expect("uuid pattern"))
});

/// Whether `s` passes `format` (as written in the schema; `date-time` and `datetime` alike).
pub(super) fn valid(format: &str, s: &str) -> bool {
    match format.replace('-', "").as_str() {
        "byte" => BASE64.is_match(s),
        "datetime" => date_time(s),
        "date" => date(s),
        "ipv4" => ip_sloppy(s).is_some() && s.contains('.'),
        "ipv6" => s.parse::<Ipv6Addr>().is_ok(),
        "cidr" => cidr(s),
        "mac" => mac(s),
        "hostname" => hostname(s),
        "uuid" => UUID[0].is_match(s),
        "uuid3" => UUID[1].is_match(s),
        "uuid4" => UUID[2].is_match(s),
        "uuid5" => UUID[3].is_match(s),
        _ => true,
    }
}

/// Go's time.Parse("2006-01-02"): four-digit year, real month and day.
fn date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = &s[r];
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    let (Some(year), Some(month), Some(day)) = (num(0..4), num(5..7), num(8..10)) else {
        return false;
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// strfmt.IsDateTime: a date, a `t`, then hh:mm:ss[.frac] and `z` or an offset (any case).
fn date_time(s: &str) -> bool {
    if s.len() < 4 {
        return false;
    }
    let lower = s.to_lowercase();
    let parts: Vec<&str> = lower.split('t').collect();
    if parts.len() < 2 || !date(parts[0]) {
        return false;
    }
    let Some(m) = TIME.captures(parts[1]) else {
        return false;
    };
    &m[1] <= "23" && &m[2] <= "59" && &m[3] <= "59"
}

/// net.ParseIP in its sloppy form: IPv4 octets may carry leading zeros.
fn ip_sloppy(s: &str) -> Option<()> {
    if s.contains(':') {
        return s.parse::<Ipv6Addr>().ok().map(|_| ());
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    for p in parts {
        if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) || p.parse::<u32>().ok()? > 255 {
            return None;
        }
    }
    Some(())
}

fn cidr(s: &str) -> bool {
    let Some((addr, prefix)) = s.split_once('/') else {
        return false;
    };
    let bits = if addr.contains(':') { 128 } else { 32 };
    ip_sloppy(addr).is_some()
        && !prefix.is_empty()
        && prefix.bytes().all(|c| c.is_ascii_digit())
        && prefix.parse::<u32>().is_ok_and(|p| p <= bits)
}

/// net.ParseMAC: 6, 8 or 20 octets as xx:xx / xx-xx groups or xxxx.xxxx groups.
fn mac(s: &str) -> bool {
    let hex = |g: &str, n: usize| g.len() == n && g.bytes().all(|c| c.is_ascii_hexdigit());
    if s.contains('.') {
        let groups: Vec<&str> = s.split('.').collect();
        [3, 4, 10].contains(&groups.len()) && groups.iter().all(|g| hex(g, 4))
    } else {
        let sep = if s.contains(':') { ':' } else { '-' };
        let groups: Vec<&str> = s.split(sep).collect();
        [6, 8, 20].contains(&groups.len()) && groups.iter().all(|g| hex(g, 2))
    }
}

fn hostname(s: &str) -> bool {
    HOSTNAME.is_match(s) && s.len() <= 255 && s.split('.').all(|p| p.len() <= 63)
}

#[cfg(test)]
mod tests {
    use super::valid;

    #[test]
    fn byte_is_padded_standard_base64() {
        assert!(valid("byte", "aGVsbG8="));
        assert!(valid("byte", "AAAA"));
        assert!(!valid("byte", "hello"));
        assert!(!valid("byte", "aGVsbG8"));
        assert!(!valid("byte", ""));
    }

    #[test]
    fn date_time_follows_strfmt() {
        assert!(valid("date-time", "2024-05-01T10:00:00Z"));
        assert!(valid("date-time", "2024-05-01t10:00:00.123+02:00"));
        assert!(!valid("date-time", "2024-05-01 10:00:00Z"));
        assert!(!valid("date-time", "2024-02-30T10:00:00Z"));
        assert!(!valid("date-time", "2024-05-01T24:00:00Z"));
        assert!(!valid("date-time", "yesterday"));
        assert!(valid("date", "2024-02-29"));
        assert!(!valid("date", "2023-02-29"));
    }

    #[test]
    fn network_formats() {
        assert!(valid("ipv4", "10.0.8.100"));
        assert!(valid("ipv4", "010.0.8.100"));
        assert!(!valid("ipv4", "10.0.8"));
        assert!(!valid("ipv4", "2600:1f14::10"));
        assert!(valid("ipv6", "2600:1f14::10"));
        assert!(!valid("ipv6", "10.0.0.1"));
        assert!(valid("cidr", "10.0.0.0/16"));
        assert!(!valid("cidr", "10.0.0.0/33"));
        assert!(valid("cidr", "2600::/64"));
        assert!(valid("mac", "02:42:ac:11:00:02"));
        assert!(valid("mac", "0242.ac11.0002"));
        assert!(!valid("mac", "02:42:ac:11:00"));
        assert!(valid("hostname", "ip-10-0-8-1.ec2.internal"));
        assert!(!valid("hostname", "-bad"));
        assert!(valid("uuid", "123e4567-e89b-12d3-a456-426614174000"));
        assert!(!valid("uuid4", "123e4567-e89b-12d3-a456-426614174000"));
        assert!(valid("email", "anything goes here"));
    }
}
