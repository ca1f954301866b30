//! The one grammar per unit: durations, message rates, bit rates, percentages, sizes, counts, seeds, addresses.
//! Every function takes what the user typed and returns the value or ONE line that names the value and says
//! what to write instead; they serve as clap value parsers and are used by config. This module imports no other
//! module of the crate, so everything may use it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// The longest duration any flag accepts. Far beyond any sensible run, and far below what would overflow
/// the arithmetic of deadlines and nanosecond timestamps (2^64 ns is 584 years).
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);
/// The slowest paced rate: one message every 100 s. Slower schedules are not a benchmark, and much slower
/// ones (1e-16 msg/s) overflow the schedule's arithmetic.
pub const MIN_MSG_RATE: f64 = 0.01;
/// The fastest paced rate: far beyond what a socket can do, and small enough that gaps stay representable.
pub const MAX_MSG_RATE: f64 = 1e9;
/// The largest message count: exact in an f64, and more than any run sends.
pub const MAX_COUNT: u64 = 1_000_000_000_000_000;

/// Units of a duration, as humantime spells them (months and years are left out: their length varies).
const DURATION_UNITS: &[(&[&str], u128)] = &[
    (&["nsec", "ns"], 1),
    (&["usec", "us", "µs"], 1_000),
    (&["msec", "ms"], 1_000_000),
    (&["seconds", "second", "secs", "sec", "s"], 1_000_000_000),
    (&["minutes", "minute", "mins", "min", "m"], 60_000_000_000),
    (&["hours", "hour", "hrs", "hr", "h"], 3_600_000_000_000),
    (&["days", "day", "d"], 86_400_000_000_000),
    (&["weeks", "week", "w"], 604_800_000_000_000),
];

fn is_plain_decimal(t: &str) -> bool {
    let mut parts = t.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| f.bytes().all(|b| b.is_ascii_digit()))
}

/// `digits[.digits]` times `unit_ns`, exactly (no float rounding), or None beyond `u128`.
fn decimal_times(num: &str, unit_ns: u128) -> Option<u128> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let whole: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut total = whole.checked_mul(unit_ns)?;
    // Digits below a nanosecond are dropped; 30 digits are more than any unit needs.
    let mut scale = unit_ns;
    for d in frac.bytes().take(30) {
        scale /= 10;
        total = total.checked_add(u128::from(d - b'0') * scale)?;
    }
    Some(total)
}

/// A duration: `10s`, `500ms`, `2m`, `1h30m`, `1.5ms`, `250us` (units ns, us, ms, s, m, h, d, w and their long
/// names). A bare `0` is zero; any other bare number is refused, because `10` could mean seconds or
/// milliseconds. At most [`MAX_DURATION`].
pub fn duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err(format!(
            "duration '{s}' must not be negative: write e.g. 10s or 500ms"
        ));
    }
    if is_plain_decimal(t) {
        if t.bytes().all(|b| b == b'0' || b == b'.') {
            return Ok(Duration::ZERO);
        }
        return Err(format!("'{t}' needs a unit: write {t}s or {t}ms"));
    }
    let not_one = || format!("'{s}' is not a duration: write e.g. 10s, 500ms, 2m or 1h30m");
    // Exponents, inf and NaN: numbers, but not how anyone writes a duration.
    if t.is_empty() || t.parse::<f64>().is_ok() {
        return Err(not_one());
    }
    let mut rest = t;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(n);
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(not_one());
        }
        let after = after.trim_start();
        let u = after
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(u);
        if unit.is_empty() {
            return Err(format!(
                "'{s}' needs a unit after {num}: write e.g. {num}s or {num}ms"
            ));
        }
        let unit_ns = DURATION_UNITS
            .iter()
            .find(|(names, _)| names.contains(&unit))
            .map(|&(_, ns)| ns)
            .ok_or_else(|| {
                format!(
                    "'{s}': unknown unit '{unit}': use ns, us, ms, s, m, h or d (e.g. 10s, 1h30m)"
                )
            })?;
        total = decimal_times(num, unit_ns)
            .and_then(|v| total.checked_add(v))
            .unwrap_or(u128::MAX);
        rest = after.trim_start();
    }
    if total > MAX_DURATION.as_nanos() {
        return Err(format!(
            "duration '{s}' is too long: at most {} ({}d)",
            humantime::format_duration(MAX_DURATION),
            MAX_DURATION.as_secs() / 86_400
        ));
    }
    // At most MAX_DURATION, so it fits in u64 nanoseconds.
    Ok(Duration::from_nanos(total as u64))
}

/// A non-negative number with an optional decimal suffix k/K (10^3), M (10^6), G (10^9).
fn si_number(s: &str) -> Option<f64> {
    let t = s.trim();
    let (digits, mult) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1e3),
        Some((i, 'M')) => (&t[..i], 1e6),
        Some((i, 'G')) => (&t[..i], 1e9),
        _ => (t, 1.0),
    };
    let v: f64 = digits.trim().parse().ok()?;
    (v.is_finite()).then_some(v * mult)
}

/// Messages per second: `1000`, `50k`, `1.5M`; `0` means unpaced (as fast as possible). A paced rate is
/// between [`MIN_MSG_RATE`] and [`MAX_MSG_RATE`].
pub fn msg_rate(s: &str) -> Result<f64, String> {
    let v = si_number(s).ok_or_else(|| {
        format!(
            "'{s}' is not a message rate: write e.g. 1000, 50k, 1.5M, or 0 for as fast as possible"
        )
    })?;
    if v < 0.0 || s.trim().starts_with('-') {
        return Err(format!(
            "rate '{s}' must not be negative: give messages per second (e.g. 1000, 50k), or 0 for as fast as possible"
        ));
    }
    if v == 0.0 {
        return Ok(0.0);
    }
    if v < MIN_MSG_RATE {
        return Err(format!(
            "rate '{s}' is below the slowest rate accepted, {MIN_MSG_RATE} msg/s (one message every 100 s): \
             give a larger rate, or 0 for as fast as possible"
        ));
    }
    if v > MAX_MSG_RATE {
        return Err(format!(
            "rate '{s}' is above the fastest paced rate accepted, 1G msg/s: give 0 for as fast as possible"
        ));
    }
    Ok(v)
}

/// A bit rate as tc writes it: bit/kbit/mbit/gbit (SI), kibit/mibit/gibit (IEC), bps/kbps/mbps/gbps (BYTES per
/// second, as in tc); a bare number is bits per second. 1bit to 1000gbit.
pub fn bit_rate(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    if t.starts_with('-') {
        return Err(format!(
            "rate '{s}' must not be negative: write e.g. 10mbit or 500kbit"
        ));
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a bit rate: write e.g. 10mbit or 500kbit"))?;
    let mult = match unit.trim() {
        "" | "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "kibit" => 1024.0,
        "mibit" => 1024.0 * 1024.0,
        "gibit" => 1024.0 * 1024.0 * 1024.0,
        "bps" => 8.0,
        "kbps" => 8e3,
        "mbps" => 8e6,
        "gbps" => 8e9,
        u => {
            return Err(format!(
                "'{s}': unknown rate unit '{u}': use bit, kbit, mbit, gbit (or bps, kbps, ... for bytes/s, as tc)"
            ))
        }
    };
    let bps = (v * mult).round();
    if !(1.0..=1e12).contains(&bps) {
        return Err(format!(
            "rate '{s}' is outside 1bit..1000gbit: write e.g. 10mbit"
        ));
    }
    Ok(bps as u64)
}

/// A percentage as a fraction: `5%` or `5` → 0.05, `0.1%` → 0.001. 0% to 100%.
pub fn percent(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let num = t.strip_suffix('%').unwrap_or(t).trim();
    let v: f64 = num
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite())
        .ok_or_else(|| format!("'{s}' is not a percentage: write e.g. 5% or 0.1%"))?;
    if v < 0.0 || num.starts_with('-') {
        return Err(format!(
            "percentage '{s}' must not be negative: give 0% to 100%, e.g. 5%"
        ));
    }
    if v > 100.0 {
        return Err(format!(
            "percentage '{s}' is above 100%: give 0% to 100%, e.g. 5%"
        ));
    }
    Ok(v / 100.0)
}

/// Bytes: a positive whole number, `k` = 1024 bytes (`64`, `1400`, `64k`). Overflow is an error, never a wrap.
pub fn size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err(format!(
            "size '{s}' must not be negative: give a positive number of bytes, e.g. 64"
        ));
    }
    let (digits, mult) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1usize << 10),
        Some((i, 'M')) => (&t[..i], 1 << 20),
        Some((i, 'G')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "'{s}' is not a size in bytes: write e.g. 64, 1400, 64k or 512M (k = 1024, M = 1024k, G = 1024M)"
        ));
    }
    let v = digits
        .parse::<usize>()
        .ok()
        .and_then(|v| v.checked_mul(mult))
        .ok_or_else(|| format!("size '{s}' is too large: give at most {} bytes", usize::MAX))?;
    if v == 0 {
        return Err(format!(
            "size '{s}' must be a positive number of bytes (48 at least: the header)"
        ));
    }
    Ok(v)
}

/// `--size` as typed: one size, a range `A..B`, or a list `A,B,C`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeSpec {
    Fixed(usize),
    Range(usize, usize),
    List(Vec<usize>),
}

pub fn size_spec(s: &str) -> Result<SizeSpec, String> {
    if let Some((a, b)) = s.split_once("..") {
        let (a, b) = (size(a)?, size(b)?);
        if a > b {
            return Err(format!(
                "size range '{s}' runs backwards: write the smaller size first"
            ));
        }
        return Ok(SizeSpec::Range(a, b));
    }
    if s.contains(',') {
        let list = s.split(',').map(size).collect::<Result<Vec<_>, _>>()?;
        return Ok(SizeSpec::List(list));
    }
    size(s).map(SizeSpec::Fixed)
}

/// A whole number of messages, 1 or more, with an optional k/M/G suffix (10^3, 10^6, 10^9): `10000`, `1M`.
pub fn count(s: &str) -> Result<u64, String> {
    whole(s, 1, MAX_COUNT, "count")
}

/// A whole number from `lo` to `hi` (k/M/G suffixes allowed), converted to the flag's integer type.
pub fn whole_in<T>(
    lo: u64,
    hi: u64,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: TryFrom<u64>,
{
    move |s: &str| {
        let v = whole(s, lo, hi, "value")?;
        T::try_from(v).map_err(|_| format!("'{s}' is out of range: give {lo} to {hi}"))
    }
}

fn whole(s: &str, lo: u64, hi: u64, what: &str) -> Result<u64, String> {
    let range = if hi == MAX_COUNT {
        format!("a whole number, {lo} or more")
    } else {
        format!("a whole number from {lo} to {hi}")
    };
    if s.trim().starts_with('-') {
        return Err(format!("{what} '{s}' must not be negative: give {range}"));
    }
    let v = si_number(s).ok_or_else(|| format!("'{s}' is not a whole number: give {range}"))?;
    if v.fract() != 0.0 || v < lo as f64 || v > hi as f64 {
        return Err(format!("{what} '{s}' must be {range}"));
    }
    Ok(v as u64)
}

/// A random seed: a whole number from 0 to 2^64-1, written out (no suffixes: a seed is an identity).
pub fn seed(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err(format!(
            "seed '{s}' must not be negative: give a whole number from 0 to {}",
            u64::MAX
        ));
    }
    t.parse().map_err(|_| {
        format!(
            "'{s}' is not a seed: give a whole number from 0 to {}, e.g. 7",
            u64::MAX
        )
    })
}

/// netem's `gemodel p[,r[,1-h[,1-k]]]`, each a percentage (as fractions here); netem's defaults for the rest:
/// r = 1-p, 1-h = 100%, 1-k = 0%.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gemodel {
    pub p: f64,
    pub r: f64,
    pub bad_loss: f64,
    pub good_loss: f64,
}

pub fn gemodel(s: &str) -> Result<Gemodel, String> {
    let vals: Vec<f64> = s
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|x| !x.is_empty())
        .map(percent)
        .collect::<Result<_, _>>()?;
    if vals.is_empty() || vals.len() > 4 {
        return Err(format!(
            "'{s}': --gemodel takes p[,r[,1-h[,1-k]]], e.g. 1%,30% or 1%,30%,100%,0%"
        ));
    }
    let p = vals[0];
    Ok(Gemodel {
        p,
        r: vals.get(1).copied().unwrap_or(1.0 - p),
        bad_loss: vals.get(2).copied().unwrap_or(1.0),
        good_loss: vals.get(3).copied().unwrap_or(0.0),
    })
}

/// An interface address with prefix length, e.g. `198.18.0.1/30`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

pub fn cidr(s: &str) -> Result<Cidr, String> {
    let (a, p) = s
        .trim()
        .split_once('/')
        .ok_or_else(|| format!("'{s}' needs a prefix length: write e.g. 198.18.0.1/30"))?;
    let addr: IpAddr = a
        .parse()
        .map_err(|_| format!("'{a}' in '{s}' is not an IP address: write e.g. 198.18.0.1/30"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = p
        .parse()
        .ok()
        .filter(|&n| n <= max)
        .ok_or_else(|| format!("'{p}' in '{s}' is not a prefix length: give 0 to {max}"))?;
    Ok(Cidr { addr, prefix })
}

/// HOST[:PORT] as typed; the host is resolved later (config), as names need the resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: Option<u16>,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.port, self.host.contains(':')) {
            (None, _) => f.write_str(&self.host),
            (Some(p), true) => write!(f, "[{}]:{p}", self.host),
            (Some(p), false) => write!(f, "{}:{p}", self.host),
        }
    }
}

fn split_host_port(spec: &str) -> Option<(&str, Option<u16>)> {
    let s = spec.trim();
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            p => Some((host, Some(p.strip_prefix(':')?.parse().ok()?))),
        };
    }
    match s.matches(':').count() {
        0 => Some((s, None)),
        1 => {
            let (h, p) = s.split_once(':')?;
            Some((h, Some(p.parse().ok()?)))
        }
        _ => Some((s, None)), // a bare IPv6 address
    }
}

fn is_port_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// A receiver to send to: HOST[:PORT], a name or an IPv4/IPv6 address (`[::1]:5301`). A bare number is
/// refused: it would be read as an IPv4 address (`5300` is 0.0.20.180), where the user meant a port.
pub fn host(s: &str) -> Result<HostPort, String> {
    let t = s.trim();
    if is_port_number(t) {
        return Err(format!(
            "'{t}' is a port, not a host: write HOST:{t}, e.g. 127.0.0.1:{t}"
        ));
    }
    let (host, port) = split_host_port(t)
        .ok_or_else(|| format!("'{s}' is not HOST[:PORT] (IPv6: [::1]:5301): check the address"))?;
    if host.is_empty() {
        return Err(format!(
            "'{s}' has no host: give e.g. 127.0.0.1{}",
            port.map(|p| format!(":{p}")).unwrap_or_default()
        ));
    }
    Ok(HostPort {
        host: host.to_string(),
        port,
    })
}

/// An address to listen on: HOST[:PORT] as for [`host`], and a bare number is a PORT on every address
/// (0.0.0.0), never an IPv4 address.
pub fn listen(s: &str) -> Result<HostPort, String> {
    let t = s.trim();
    if is_port_number(t) {
        let port: u16 = t
            .parse()
            .map_err(|_| format!("port '{t}' is out of range: give 0 to 65535"))?;
        return Ok(HostPort {
            host: Ipv4Addr::UNSPECIFIED.to_string(),
            port: Some(port),
        });
    }
    host(t)
}

/// A numeric socket address, `127.0.0.1:0` or `[::1]:5300`; a bare number is a port on every address.
pub fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    let hp = listen(s)?;
    let ip: IpAddr = hp
        .host
        .parse()
        .map_err(|_| format!("'{s}' is not IP:PORT: write e.g. 127.0.0.1:0 or [::1]:5300"))?;
    Ok(SocketAddr::new(ip, hp.port.unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err<T: std::fmt::Debug>(r: Result<T, String>) -> String {
        r.expect_err("should be refused")
    }

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        assert_eq!(duration("500ms"), Ok(ms(500)));
        assert_eq!(duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(duration("1.5ms"), Ok(Duration::from_micros(1500)));
        assert_eq!(duration("0.1s"), Ok(ms(100)));
        assert_eq!(duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(duration("250µs"), Ok(Duration::from_micros(250)));
        assert_eq!(duration("100ns"), Ok(Duration::from_nanos(100)));
        assert_eq!(duration("2 sec"), Ok(Duration::from_secs(2)));
        assert_eq!(duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(duration("1w"), Ok(Duration::from_secs(604_800)));
        assert_eq!(duration("0"), Ok(Duration::ZERO));
        assert_eq!(duration("0.0"), Ok(Duration::ZERO));
        assert_eq!(duration("0ms"), Ok(Duration::ZERO));
        assert_eq!(duration("30d"), Ok(MAX_DURATION));
        assert_eq!(err(duration("10")), "'10' needs a unit: write 10s or 10ms");
        assert_eq!(
            err(duration("0.5")),
            "'0.5' needs a unit: write 0.5s or 0.5ms"
        );
        assert_eq!(
            err(duration("-2s")),
            "duration '-2s' must not be negative: write e.g. 10s or 500ms"
        );
        assert_eq!(
            err(duration("-10ms")),
            "duration '-10ms' must not be negative: write e.g. 10s or 500ms"
        );
        let soon = "'soon' is not a duration: write e.g. 10s, 500ms, 2m or 1h30m";
        assert_eq!(err(duration("soon")), soon);
        assert_eq!(
            err(duration("")),
            "'' is not a duration: write e.g. 10s, 500ms, 2m or 1h30m"
        );
        assert_eq!(
            err(duration("1e20")),
            "'1e20' is not a duration: write e.g. 10s, 500ms, 2m or 1h30m"
        );
        assert!(err(duration("1e20s")).contains("unknown unit 'e'"));
        assert!(err(duration("inf")).contains("is not a duration"));
        assert!(err(duration("10 parsecs")).contains("unknown unit 'parsecs'"));
        assert!(err(duration("1.2.3s")).contains("is not a duration"));
        assert_eq!(
            err(duration("1h30")),
            "'1h30' needs a unit after 30: write e.g. 30s or 30ms"
        );
        let long = "duration '31d' is too long: at most 30days (30d)";
        assert_eq!(err(duration("31d")), long);
        assert!(err(duration("30d 1ns")).contains("too long"));
        // Anything that would overflow is refused, not wrapped or panicking.
        assert!(err(duration("99999999999999999999999999999999999999999s")).contains("too long"));
        assert!(err(duration("18446744073709551616s")).contains("too long"));
    }

    #[test]
    fn message_rates() {
        assert_eq!(msg_rate("1000"), Ok(1000.0));
        assert_eq!(msg_rate("50k"), Ok(50_000.0));
        assert_eq!(msg_rate("1.5M"), Ok(1_500_000.0));
        assert_eq!(msg_rate("1G"), Ok(1e9));
        assert_eq!(msg_rate("0"), Ok(0.0));
        assert_eq!(msg_rate("0.01"), Ok(0.01));
        assert_eq!(
            err(msg_rate("fast")),
            "'fast' is not a message rate: write e.g. 1000, 50k, 1.5M, or 0 for as fast as possible"
        );
        assert_eq!(
            err(msg_rate("-1")),
            "rate '-1' must not be negative: give messages per second (e.g. 1000, 50k), or 0 for as fast as possible"
        );
        assert!(err(msg_rate("-0")).contains("must not be negative"));
        assert!(err(msg_rate("1e-16")).contains("below the slowest rate accepted, 0.01 msg/s"));
        assert!(err(msg_rate("2G")).contains("above the fastest paced rate"));
        assert!(err(msg_rate("inf")).contains("not a message rate"));
        assert!(err(msg_rate("NaN")).contains("not a message rate"));
    }

    #[test]
    fn bit_rates() {
        assert_eq!(bit_rate("10mbit"), Ok(10_000_000));
        assert_eq!(bit_rate("500kbit"), Ok(500_000));
        assert_eq!(bit_rate("1gbit"), Ok(1_000_000_000));
        assert_eq!(bit_rate("1kbps"), Ok(8_000));
        assert_eq!(bit_rate("1mibit"), Ok(1 << 20));
        assert_eq!(bit_rate("64000"), Ok(64_000));
        assert_eq!(bit_rate("10Mbit"), Ok(10_000_000));
        assert_eq!(
            err(bit_rate("-5mbit")),
            "rate '-5mbit' must not be negative: write e.g. 10mbit or 500kbit"
        );
        assert!(err(bit_rate("10 parsecs")).contains("unknown rate unit 'parsecs'"));
        assert_eq!(
            err(bit_rate("fast")),
            "'fast' is not a bit rate: write e.g. 10mbit or 500kbit"
        );
        assert!(err(bit_rate("0")).contains("outside 1bit..1000gbit"));
        assert!(err(bit_rate("2000gbit")).contains("outside 1bit..1000gbit"));
    }

    #[test]
    fn percentages() {
        assert_eq!(percent("5%"), Ok(0.05));
        assert_eq!(percent("5"), Ok(0.05));
        assert_eq!(percent("0%"), Ok(0.0));
        assert_eq!(percent("100%"), Ok(1.0));
        assert!((percent("0.1%").unwrap() - 0.001).abs() < 1e-15);
        assert_eq!(
            err(percent("-5%")),
            "percentage '-5%' must not be negative: give 0% to 100%, e.g. 5%"
        );
        assert_eq!(
            err(percent("101%")),
            "percentage '101%' is above 100%: give 0% to 100%, e.g. 5%"
        );
        assert_eq!(
            err(percent("x")),
            "'x' is not a percentage: write e.g. 5% or 0.1%"
        );
        assert!(err(percent("inf%")).contains("not a percentage"));
    }

    #[test]
    fn sizes() {
        assert_eq!(size("64"), Ok(64));
        assert_eq!(size("1k"), Ok(1024));
        assert_eq!(size("64K"), Ok(65_536));
        assert_eq!(size("512M"), Ok(512 << 20));
        assert_eq!(size("1G"), Ok(1 << 30));
        assert_eq!(
            err(size("0")),
            "size '0' must be a positive number of bytes (48 at least: the header)"
        );
        assert_eq!(
            err(size("-5")),
            "size '-5' must not be negative: give a positive number of bytes, e.g. 64"
        );
        assert_eq!(
            err(size("lots")),
            "'lots' is not a size in bytes: write e.g. 64, 1400, 64k or 512M (k = 1024, M = 1024k, G = 1024M)"
        );
        assert!(err(size("1.5k")).contains("not a size"));
        assert!(err(size("+5")).contains("not a size"));
        // Checked arithmetic: no silent wrap.
        assert!(err(size("9223372036854775807k")).contains("too large"));
        assert!(err(size("99999999999999999999999")).contains("too large"));
        assert_eq!(size_spec("64"), Ok(SizeSpec::Fixed(64)));
        assert_eq!(size_spec("1..1400"), Ok(SizeSpec::Range(1, 1400)));
        assert_eq!(
            size_spec("64,512,1400"),
            Ok(SizeSpec::List(vec![64, 512, 1400]))
        );
        assert_eq!(
            err(size_spec("1400..64")),
            "size range '1400..64' runs backwards: write the smaller size first"
        );
        assert!(err(size_spec("64,,9")).contains("'' is not a size"));
        assert!(err(size_spec("64..9223372036854775807k")).contains("too large"));
    }

    #[test]
    fn counts_and_ranges() {
        assert_eq!(count("10000"), Ok(10_000));
        assert_eq!(count("1M"), Ok(1_000_000));
        assert_eq!(count("1.5k"), Ok(1500));
        assert_eq!(count("1000000000000000"), Ok(MAX_COUNT));
        assert_eq!(
            err(count("0")),
            "count '0' must be a whole number, 1 or more"
        );
        assert_eq!(
            err(count("1.5")),
            "count '1.5' must be a whole number, 1 or more"
        );
        assert_eq!(
            err(count("-5")),
            "count '-5' must not be negative: give a whole number, 1 or more"
        );
        assert_eq!(
            err(count("many")),
            "'many' is not a whole number: give a whole number, 1 or more"
        );
        assert!(err(count("2000000000000000")).contains("must be a whole number"));
        let clients = whole_in::<u32>(1, 1000);
        assert_eq!(clients("20"), Ok(20));
        assert_eq!(clients("1k"), Ok(1000));
        assert_eq!(
            err(clients("0")),
            "value '0' must be a whole number from 1 to 1000"
        );
        assert_eq!(
            err(clients("-1")),
            "value '-1' must not be negative: give a whole number from 1 to 1000"
        );
        assert_eq!(whole_in::<u8>(0, 300)("255"), Ok(255));
        assert_eq!(
            err(whole_in::<u8>(0, 300)("256")),
            "'256' is out of range: give 0 to 300"
        );
    }

    #[test]
    fn seeds() {
        assert_eq!(seed("7"), Ok(7));
        assert_eq!(seed("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(
            err(seed("-1")),
            "seed '-1' must not be negative: give a whole number from 0 to 18446744073709551615"
        );
        assert_eq!(
            err(seed("1k")),
            "'1k' is not a seed: give a whole number from 0 to 18446744073709551615, e.g. 7"
        );
        assert!(err(seed("18446744073709551616")).contains("not a seed"));
    }

    #[test]
    fn gemodels() {
        assert_eq!(
            gemodel("1%,30%"),
            Ok(Gemodel {
                p: 0.01,
                r: 0.3,
                bad_loss: 1.0,
                good_loss: 0.0
            })
        );
        assert_eq!(gemodel("1%").unwrap().r, 0.99);
        assert_eq!(gemodel("1 30 50 2").unwrap().good_loss, 0.02);
        assert_eq!(
            err(gemodel("1,2,3,4,5")),
            "'1,2,3,4,5': --gemodel takes p[,r[,1-h[,1-k]]], e.g. 1%,30% or 1%,30%,100%,0%"
        );
        assert!(err(gemodel("")).contains("--gemodel takes"));
        assert!(err(gemodel("1%,x")).contains("'x' is not a percentage"));
        assert!(err(gemodel("-1%")).contains("must not be negative"));
    }

    #[test]
    fn cidrs() {
        let c = cidr("198.18.0.1/30").unwrap();
        assert_eq!(c.to_string(), "198.18.0.1/30");
        assert_eq!(cidr("2001:2::1/64").unwrap().prefix, 64);
        assert_eq!(
            err(cidr("198.18.0.1")),
            "'198.18.0.1' needs a prefix length: write e.g. 198.18.0.1/30"
        );
        assert_eq!(
            err(cidr("198.18.0.1/33")),
            "'33' in '198.18.0.1/33' is not a prefix length: give 0 to 32"
        );
        assert!(err(cidr("x/3")).contains("'x' in 'x/3' is not an IP address"));
    }

    #[test]
    fn hosts_and_listen_addresses() {
        let hp = |h: &str, p: Option<u16>| HostPort {
            host: h.into(),
            port: p,
        };
        assert_eq!(host("example.org"), Ok(hp("example.org", None)));
        assert_eq!(host("10.1.2.3:99"), Ok(hp("10.1.2.3", Some(99))));
        assert_eq!(host("[::1]:5301"), Ok(hp("::1", Some(5301))));
        assert_eq!(host("::1"), Ok(hp("::1", None)));
        assert_eq!(host("[::1]:5301").unwrap().to_string(), "[::1]:5301");
        assert_eq!(
            err(host("h:notaport")),
            "'h:notaport' is not HOST[:PORT] (IPv6: [::1]:5301): check the address"
        );
        assert_eq!(
            err(host(":5300")),
            "':5300' has no host: give e.g. 127.0.0.1:5300"
        );
        assert_eq!(
            err(host("5300")),
            "'5300' is a port, not a host: write HOST:5300, e.g. 127.0.0.1:5300"
        );
        // A bare number is a port on every address, never the IPv4 address 0.0.20.180.
        assert_eq!(listen("5300"), Ok(hp("0.0.0.0", Some(5300))));
        assert_eq!(listen("127.0.0.1:7"), Ok(hp("127.0.0.1", Some(7))));
        assert_eq!(
            err(listen("70000")),
            "port '70000' is out of range: give 0 to 65535"
        );
        assert_eq!(
            err(listen("123456")),
            "port '123456' is out of range: give 0 to 65535"
        );
        assert!(err(host("123456")).contains("is a port, not a host"));
        assert_eq!(socket_addr("5300"), Ok("0.0.0.0:5300".parse().unwrap()));
        assert_eq!(socket_addr("[::1]:9"), Ok("[::1]:9".parse().unwrap()));
        assert_eq!(socket_addr("127.0.0.1"), Ok("127.0.0.1:0".parse().unwrap()));
        assert_eq!(
            err(socket_addr("localhost:9")),
            "'localhost:9' is not IP:PORT: write e.g. 127.0.0.1:0 or [::1]:5300"
        );
    }
}
