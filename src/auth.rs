//! Optional authentication (`--key-file`): a secret shared by sender and receiver, a mutual
//! challenge-response in the handshake (fresh nonces from both sides, so nothing replays), a key per session
//! derived from the secret and both nonces, and a 16-byte MAC (BLAKE3 in keyed mode, truncated) on every
//! control frame, every data message (UDP datagram or TCP message) and the TCP data connection's preamble.
//!
//! What it protects: nobody without the secret can start a session, inject or alter a message that counts,
//! forge an echo reply, or take over a data connection. What it does not: confidentiality (nothing is
//! encrypted), and an on-path attacker can still drop, delay or reorder packets, which is what a path does
//! anyway and what sockbench measures.

use std::path::Path;

/// Bytes of every MAC on the wire.
pub const MAC_LEN: usize = 16;
/// Bytes of each handshake nonce.
pub const NONCE_LEN: usize = 16;
/// The shortest secret accepted.
pub const MIN_SECRET: usize = 16;

/// The shared secret, from a key file.
#[derive(Clone)]
pub struct Secret([u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// The secret in `bytes` (a key file's content; trailing whitespace ignored), hashed to 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Secret, String> {
        let end = bytes
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |i| i + 1);
        let material = &bytes[..end];
        if material.len() < MIN_SECRET {
            return Err(format!(
                "the key file holds {} bytes; it needs at least {MIN_SECRET}: make one with \
                 `head -c 32 /dev/urandom | base64 > sockbench.key` and give the same file to both ends",
                material.len()
            ));
        }
        Ok(Secret(blake3::derive_key(
            "sockbench key file v1",
            material,
        )))
    }

    /// Read a key file.
    pub fn read(path: &Path) -> Result<Secret, String> {
        let bytes = std::fs::read(path).map_err(|e| {
            format!(
                "cannot read the key file {} ({e}): check the path (--key-file or SOCKBENCH_KEY_FILE)",
                path.display()
            )
        })?;
        Secret::from_bytes(&bytes)
    }
}

/// Which way a frame or message goes: each direction has its own key, so nothing can be reflected back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    SenderToReceiver,
    ReceiverToSender,
}

/// The keys of one session, derived from the secret and both nonces.
#[derive(Clone)]
pub struct SessionKeys {
    ctl_up: [u8; 32],
    ctl_down: [u8; 32],
    data_up: [u8; 32],
    data_down: [u8; 32],
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(..)")
    }
}

fn mac_of(key: &[u8; 32], parts: &[&[u8]]) -> [u8; MAC_LEN] {
    let mut h = blake3::Hasher::new_keyed(key);
    for p in parts {
        // Length-prefixed, so no two different splits of the same bytes give the same MAC.
        h.update(&(p.len() as u64).to_be_bytes());
        h.update(p);
    }
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&h.finalize().as_bytes()[..MAC_LEN]);
    out
}

/// Compare two MACs without stopping at the first difference.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Secret {
    /// The receiver's proof: it knows the secret, for this hello (its bytes' hash) and both nonces.
    pub fn receiver_proof(
        &self,
        hello_hash: &[u8; 32],
        nonce_s: &[u8],
        nonce_r: &[u8],
    ) -> [u8; MAC_LEN] {
        mac_of(&self.0, &[b"receiver proof", hello_hash, nonce_s, nonce_r])
    }

    /// The sender's proof, over the receiver's fresh nonce.
    pub fn sender_proof(
        &self,
        hello_hash: &[u8; 32],
        nonce_s: &[u8],
        nonce_r: &[u8],
    ) -> [u8; MAC_LEN] {
        mac_of(&self.0, &[b"sender proof", hello_hash, nonce_s, nonce_r])
    }

    /// The session's keys.
    pub fn session_keys(&self, session: u64, nonce_s: &[u8], nonce_r: &[u8]) -> SessionKeys {
        let k = |what: &str| {
            let mut h = blake3::Hasher::new_derive_key(&format!("sockbench session {what} v2"));
            h.update(&self.0);
            h.update(&session.to_be_bytes());
            h.update(nonce_s);
            h.update(nonce_r);
            *h.finalize().as_bytes()
        };
        SessionKeys {
            ctl_up: k("control up"),
            ctl_down: k("control down"),
            data_up: k("data up"),
            data_down: k("data down"),
        }
    }
}

/// Bytes as lowercase hex, for nonces and proofs in the JSON control messages.
pub fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Exactly `N` bytes from hex, or None.
pub fn from_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A fresh random nonce (the thread RNG is a CSPRNG seeded by the OS).
pub fn nonce() -> [u8; NONCE_LEN] {
    rand::random()
}

/// A hash of the hello's bytes, bound into both proofs so an on-path change to it is caught.
pub fn hello_hash(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

impl SessionKeys {
    fn ctl(&self, d: Dir) -> &[u8; 32] {
        match d {
            Dir::SenderToReceiver => &self.ctl_up,
            Dir::ReceiverToSender => &self.ctl_down,
        }
    }

    fn data(&self, d: Dir) -> &[u8; 32] {
        match d {
            Dir::SenderToReceiver => &self.data_up,
            Dir::ReceiverToSender => &self.data_down,
        }
    }

    /// The MAC of control frame number `n` (per direction, from 0) with `body`: a frame cannot be replayed,
    /// dropped or moved without the next check failing.
    pub fn frame_mac(&self, d: Dir, n: u64, body: &[u8]) -> [u8; MAC_LEN] {
        mac_of(self.ctl(d), &[&n.to_be_bytes(), body])
    }

    /// The MAC of a data message (everything but its last `MAC_LEN` bytes, where the MAC goes).
    #[inline]
    pub fn message_mac(&self, d: Dir, msg_without_mac: &[u8]) -> [u8; MAC_LEN] {
        let mut out = [0u8; MAC_LEN];
        let h = blake3::keyed_hash(self.data(d), msg_without_mac);
        out.copy_from_slice(&h.as_bytes()[..MAC_LEN]);
        out
    }

    /// Write the MAC into the last `MAC_LEN` bytes of `msg`.
    #[inline]
    pub fn seal_message(&self, d: Dir, msg: &mut [u8]) {
        if msg.len() < MAC_LEN {
            return;
        }
        let at = msg.len() - MAC_LEN;
        let mac = self.message_mac(d, &msg[..at]);
        msg[at..].copy_from_slice(&mac);
    }

    /// Does `msg` end with its valid MAC?
    #[inline]
    pub fn verify_message(&self, d: Dir, msg: &[u8]) -> bool {
        if msg.len() < MAC_LEN {
            return false;
        }
        let at = msg.len() - MAC_LEN;
        same(&self.message_mac(d, &msg[..at]), &msg[at..])
    }

    /// The MAC of a TCP data connection's preamble for `session`.
    pub fn preamble_mac(&self, session: u64) -> [u8; MAC_LEN] {
        mac_of(
            self.data(Dir::SenderToReceiver),
            &[b"data preamble", &session.to_be_bytes()],
        )
    }

    /// The MAC of a --load connection's preamble for `session` (`down`: the receiver sends on it); apart from
    /// the data preamble's, so neither stands in for the other.
    pub fn load_preamble_mac(&self, session: u64, down: bool) -> [u8; MAC_LEN] {
        mac_of(
            self.data(Dir::SenderToReceiver),
            &[b"load preamble", &session.to_be_bytes(), &[u8::from(down)]],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_junk() {
        assert_eq!(from_hex::<2>(&to_hex(&[0, 255])), Some([0, 255]));
        assert_eq!(from_hex::<2>("00f"), None);
        assert_eq!(from_hex::<2>("zz00"), None);
        assert_eq!(from_hex::<1>("é"), None);
    }

    #[test]
    fn short_or_missing_keys_are_refused_with_the_fix() {
        let e = Secret::from_bytes(b"short\n").unwrap_err();
        assert!(
            e.contains("at least 16") && e.contains("head -c 32 /dev/urandom"),
            "{e}"
        );
        assert!(Secret::from_bytes(b"0123456789abcdef\n").is_ok());
        let e = Secret::read(Path::new("/nonexistent/key")).unwrap_err();
        assert!(e.contains("--key-file"), "{e}");
    }

    #[test]
    fn proofs_keys_and_macs_bind_what_they_should() {
        let a = Secret::from_bytes(b"a secret of more than 16 bytes").unwrap();
        let b = Secret::from_bytes(b"another secret of 16+ bytes").unwrap();
        let h = hello_hash(b"hello");
        let (ns, nr) = ([1u8; 16], [2u8; 16]);
        assert!(same(
            &a.receiver_proof(&h, &ns, &nr),
            &a.receiver_proof(&h, &ns, &nr)
        ));
        assert!(!same(
            &a.receiver_proof(&h, &ns, &nr),
            &b.receiver_proof(&h, &ns, &nr)
        ));
        assert!(!same(
            &a.receiver_proof(&h, &ns, &nr),
            &a.sender_proof(&h, &ns, &nr)
        ));
        assert!(!same(
            &a.receiver_proof(&h, &ns, &nr),
            &a.receiver_proof(&h, &ns, &[3u8; 16])
        ));
        let k = a.session_keys(7, &ns, &nr);
        let mut m = vec![9u8; 80];
        k.seal_message(Dir::SenderToReceiver, &mut m);
        assert!(k.verify_message(Dir::SenderToReceiver, &m));
        assert!(
            !k.verify_message(Dir::ReceiverToSender, &m),
            "directions have their own keys"
        );
        assert!(!a
            .session_keys(8, &ns, &nr)
            .verify_message(Dir::SenderToReceiver, &m));
        m[3] ^= 1;
        assert!(!k.verify_message(Dir::SenderToReceiver, &m));
        assert!(!same(
            &k.frame_mac(Dir::SenderToReceiver, 0, b"x"),
            &k.frame_mac(Dir::SenderToReceiver, 1, b"x")
        ));
    }
}
