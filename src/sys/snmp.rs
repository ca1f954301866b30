//! The kernel's own counters in /proc/net/snmp and /proc/net/netstat: host-wide (per network namespace), read
//! as text, parsed as "Group: name name ..." over "Group: value value ...".

use std::fs;

/// `name` of `group` in /proc/net/snmp (`Udp`, `Tcp`, `Ip`...), or None where it is missing.
pub fn snmp(group: &str, name: &str) -> Option<u64> {
    parse(&read("snmp")?, group, name)
}

/// `name` of `group` in /proc/net/netstat (`TcpExt`, `IpExt`...).
pub fn netstat(group: &str, name: &str) -> Option<u64> {
    parse(&read("netstat")?, group, name)
}

/// The file of the calling thread's network namespace: /proc/net is the process leader's, and a lab host is a
/// thread that entered its own namespace (thread-self exists since Linux 3.17).
fn read(file: &str) -> Option<String> {
    fs::read_to_string(format!("/proc/thread-self/net/{file}"))
        .or_else(|_| fs::read_to_string(format!("/proc/net/{file}")))
        .ok()
}

/// The value of `name` in the two lines of `group` in such a file.
pub fn parse(text: &str, group: &str, name: &str) -> Option<u64> {
    let prefix = format!("{group}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    let names = lines.next()?;
    let values = lines.next()?;
    let idx = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(idx)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_named_column_of_a_group() {
        let text = "Udp: InDatagrams NoPorts InErrors InCsumErrors\nUdp: 10 2 3 4\nUdpLite: InDatagrams\nUdpLite: 0\n";
        assert_eq!(parse(text, "Udp", "InCsumErrors"), Some(4));
        assert_eq!(parse(text, "Udp", "Nope"), None);
        assert_eq!(parse(text, "Tcp", "InErrors"), None);
        assert!(
            snmp("Udp", "InDatagrams").is_some(),
            "this kernel has /proc/net/snmp"
        );
    }
}
