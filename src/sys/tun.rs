//! TUN devices: open /dev/net/tun and attach it to a named interface (ioctl TUNSETIFF).
//!
//! Raw libc for the ioctl: nix only offers macros that generate `unsafe` ioctl functions, no safer than this.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

/// The part of `struct ifreq` TUNSETIFF reads and writes: the name, then the flags, padded to 40 bytes.
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

// The kernel copies a whole struct ifreq (40 bytes on Linux); a shorter buffer would let it read past ours.
const _: () = assert!(std::mem::size_of::<IfReqFlags>() == std::mem::size_of::<libc::ifreq>());

/// Create (or attach to) TUN device `name` (IFF_TUN | IFF_NO_PI: raw IP packets, no packet-info header) in the
/// calling thread's network namespace. The returned file is non-blocking and close-on-exec; the device lives
/// as long as it (non-persistent). Needs CAP_NET_ADMIN.
pub fn open_tun(name: &str) -> io::Result<File> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('/') || name.contains('\0')
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "bad interface name '{name}' (1..{} characters, no '/')",
                libc::IFNAMSIZ - 1
            ),
        ));
    }
    // std opens with O_CLOEXEC already.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/net/tun")?;
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
        _pad: [0; 22],
    };
    // The length check above leaves room for the terminating NUL.
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes one struct ifreq, which `req` lays out in full (asserted above); the
    // descriptor is open for the whole call.
    let rc = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            libc::TUNSETIFF,
            &mut req as *mut IfReqFlags,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_names_before_any_call() {
        for bad in ["", "sixteen-chars-xx", "a/b", "nul\0"] {
            let e = open_tun(bad).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }
}
