//! How many SSH connections the server holds at once: in total and from
//! one IP address. A connection over either cap is closed before the SSH
//! handshake, so it costs no key exchange.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use shop_shared::sync::lock;

/// The caps, shared by the accept loop and every connection's [`Permit`].
#[derive(Debug, Clone)]
pub struct Limits {
    total: u32,
    per_address: u32,
    counts: Arc<Mutex<Counts>>,
}

#[derive(Debug, Default)]
struct Counts {
    total: u32,
    by_address: HashMap<IpAddr, u32>,
}

/// One admitted connection; dropping it makes room for the next.
#[derive(Debug)]
pub struct Permit {
    address: IpAddr,
    counts: Arc<Mutex<Counts>>,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the shop is full: at most {0} sessions at once; try again in a while")]
    Total(u32),
    #[error("too many sessions from your address: at most {0} at once; close one and try again")]
    Address(u32),
}

impl Limits {
    /// At most `total` connections at once, `per_address` of them from one IP address.
    pub fn new(total: u32, per_address: u32) -> Limits {
        Limits {
            total,
            per_address,
            counts: Arc::default(),
        }
    }

    /// Admits a connection from `address`, if both caps leave room.
    ///
    /// # Errors
    ///
    /// [`Refused`] says which cap is reached.
    pub fn admit(&self, address: IpAddr) -> Result<Permit, Refused> {
        let mut counts = lock(&self.counts);
        if counts.total >= self.total {
            return Err(Refused::Total(self.total));
        }
        let from_address = counts.by_address.entry(address).or_default();
        if *from_address >= self.per_address {
            return Err(Refused::Address(self.per_address));
        }
        *from_address += 1;
        counts.total += 1;
        Ok(Permit {
            address,
            counts: self.counts.clone(),
        })
    }

    /// Connections held now.
    pub fn held(&self) -> u32 {
        lock(&self.counts).total
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        counts.total = counts.total.saturating_sub(1);
        if let Some(count) = counts.by_address.get_mut(&self.address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.by_address.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn one_address_gets_its_share_and_others_still_get_in() {
        let limits = Limits::new(10, 2);
        let first = limits.admit(ip("10.0.0.1")).expect("first");
        let _second = limits.admit(ip("10.0.0.1")).expect("second");
        assert_eq!(
            limits.admit(ip("10.0.0.1")).err(),
            Some(Refused::Address(2))
        );
        assert!(limits.admit(ip("10.0.0.2")).is_ok());
        drop(first);
        assert!(
            limits.admit(ip("10.0.0.1")).is_ok(),
            "a closed session makes room"
        );
    }

    #[test]
    fn the_total_caps_every_address_together_and_frees_up_as_sessions_end() {
        let limits = Limits::new(2, 5);
        let a = limits.admit(ip("10.0.0.1")).expect("a");
        let _b = limits.admit(ip("10.0.0.2")).expect("b");
        assert_eq!(limits.admit(ip("10.0.0.3")).err(), Some(Refused::Total(2)));
        assert_eq!(limits.held(), 2);
        drop(a);
        assert_eq!(limits.held(), 1);
        assert!(limits.admit(ip("10.0.0.3")).is_ok());
        assert!(
            lock(&limits.counts).by_address.len() <= 2,
            "addresses with no session are forgotten"
        );
    }
}
