//! One direction of a connection: its key and the number of the next
//! record. A record is sealed as a Noise transport message with AES-256-GCM
//! (nonce: four zero bytes and the record's number, big-endian; no
//! associated data), and every [`REKEY_EVERY`] records the key is replaced
//! by Noise's REKEY of it (the first 32 bytes of 32 zero bytes sealed under
//! the last nonce), so that no key seals more than a million records,
//! far inside AES-GCM's bounds. Each half of a connection owns its own
//! direction: nothing is shared between the reader and the writer.

use snow::params::CipherChoice;
use snow::resolvers::{CryptoResolver, DefaultResolver};

/// The authentication tag each record carries.
pub const TAG: usize = 16;
/// Records sealed under one key.
pub const REKEY_EVERY: u64 = 1 << 20;

/// One direction's cipher: snow's AES-256-GCM (the one the handshake
/// negotiated), owned by one half of the connection.
pub struct Cipher {
    aead: Box<dyn snow::types::Cipher>,
    /// The number of the next record.
    nonce: u64,
    every: u64,
}

/// A record that does not open under the expected key and number.
#[derive(Debug, PartialEq, Eq)]
pub struct Unopened;

impl Cipher {
    pub fn new(key: [u8; 32]) -> Cipher {
        Cipher::rekeyed_every(key, REKEY_EVERY)
    }

    /// A cipher that replaces its key every `every` records.
    pub fn rekeyed_every(key: [u8; 32], every: u64) -> Cipher {
        let mut aead = DefaultResolver.resolve_cipher(&CipherChoice::AESGCM).expect("snow is built with AES-GCM");
        aead.set(&key);
        Cipher { aead, nonce: 0, every: every.max(1) }
    }

    /// Seals `plain` into `out` (at least `plain.len() + TAG` bytes);
    /// returns the sealed length.
    pub fn seal(&mut self, plain: &[u8], out: &mut [u8]) -> usize {
        let n = self.aead.encrypt(self.nonce, &[], plain, out);
        self.advance();
        n
    }

    /// Opens `sealed` into `out` (at least `sealed.len() - TAG` bytes);
    /// returns the plaintext's length. The record's number is used up
    /// either way: a record that does not open ends the connection.
    pub fn open(&mut self, sealed: &[u8], out: &mut [u8]) -> Result<usize, Unopened> {
        if sealed.len() < TAG {
            return Err(Unopened);
        }
        let opened = self.aead.decrypt(self.nonce, &[], sealed, out);
        self.advance();
        opened.map_err(|_| Unopened)
    }

    /// Records sealed or opened so far.
    #[cfg(test)]
    pub fn records(&self) -> u64 {
        self.nonce
    }

    fn advance(&mut self) {
        self.nonce += 1;
        if self.nonce.is_multiple_of(self.every) {
            // Noise's REKEY: the key becomes the first 32 bytes of 32 zero
            // bytes sealed under the last nonce.
            self.aead.rekey();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Noise initiator and responder after `NNpsk0`, with snow's transport
    /// state for the initiator (the reference), and the raw keys.
    fn handshake() -> (snow::StatelessTransportState, [u8; 32], [u8; 32]) {
        let params: snow::params::NoiseParams = "Noise_NNpsk0_25519_AESGCM_SHA256".parse().unwrap();
        let psk = [7u8; 32];
        let mut i = snow::Builder::new(params.clone()).psk(0, &psk).unwrap().build_initiator().unwrap();
        let mut r = snow::Builder::new(params).psk(0, &psk).unwrap().build_responder().unwrap();
        let (mut a, mut b) = ([0u8; 1024], [0u8; 1024]);
        let n = i.write_message(&[], &mut a).unwrap();
        r.read_message(&a[..n], &mut b).unwrap();
        let n = r.write_message(&[], &mut a).unwrap();
        i.read_message(&a[..n], &mut b).unwrap();
        let (to_responder, to_initiator) = i.dangerously_get_raw_split();
        (i.into_stateless_transport_mode().unwrap(), to_responder, to_initiator)
    }

    /// Records sealed here are what snow (the Noise reference this code
    /// replaced) seals, before and after a rekey: peers agree byte for byte.
    #[test]
    fn records_and_rekeys_are_sealed_as_noise_seals_them() {
        let (mut reference, to_responder, _) = handshake();
        let mut mine = Cipher::rekeyed_every(to_responder, 3);
        for n in 0..10u64 {
            let plain = format!("record {n}");
            let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
            let la = mine.seal(plain.as_bytes(), &mut a);
            let lb = reference.write_message(n, plain.as_bytes(), &mut b).unwrap();
            assert_eq!(a[..la], b[..lb], "record {n}");
            if (n + 1) % 3 == 0 {
                reference.rekey_outgoing();
            }
        }
    }

    #[test]
    fn a_stream_of_records_opens_across_rekeys_and_not_under_other_keys() {
        let (_, key, other) = handshake();
        let (mut w, mut r) = (Cipher::rekeyed_every(key, 4), Cipher::rekeyed_every(key, 4));
        let mut never = Cipher::new(key);
        for n in 0..20u64 {
            let plain = n.to_be_bytes();
            let mut sealed = [0u8; 8 + TAG];
            w.seal(&plain, &mut sealed);
            let mut out = [0u8; 8];
            assert_eq!(r.open(&sealed, &mut out), Ok(8));
            assert_eq!(out, plain);
            // A reader that never rekeys opens the first four only.
            assert_eq!(never.open(&sealed, &mut out).is_ok(), n < 4, "record {n}");
        }
        let mut sealed = [0u8; TAG + 1];
        Cipher::new(other).seal(b"x", &mut sealed);
        assert_eq!(Cipher::new(key).open(&sealed, &mut [0u8; 1]), Err(Unopened));
    }
}
