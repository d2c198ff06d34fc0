//! The convergence delay, apart from what it delays: an address takes on what EC2 says of it
//! (a wire, a private address behind a public one) once EC2 has said the same thing for the
//! delay, and loses it once EC2 has said nothing of it for the delay.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// One change that is due: `address` goes from `old` to `new` (None: nowhere). The key is an
/// address, or an address in a route table.
#[derive(Debug, Clone, PartialEq)]
pub struct Due<V, K = IpAddr> {
    pub address: K,
    pub old: Option<V>,
    pub new: Option<V>,
}

/// What EC2 said of each address and since when, and what is in effect.
#[derive(Debug)]
pub struct Follow<V, K = IpAddr> {
    delay: Duration,
    /// address -> (what EC2 says, None for nothing; since when EC2 says so).
    first_seen: BTreeMap<K, (Option<V>, Instant)>,
    effective: BTreeMap<K, V>,
}

impl<V: Clone + PartialEq, K: Ord + Clone> Follow<V, K> {
    pub fn new(delay: Duration) -> Self {
        Self {
            delay,
            first_seen: BTreeMap::new(),
            effective: BTreeMap::new(),
        }
    }

    /// The changes due at `now`, given what EC2 says now (`said`); none is in effect until
    /// [`Follow::applied`] records it.
    pub fn due(&mut self, said: &BTreeMap<K, V>, now: Instant) -> Vec<Due<V, K>> {
        let gone = self.effective.keys().filter(|a| !said.contains_key(a));
        let all: BTreeMap<K, Option<V>> = said
            .iter()
            .map(|(a, v)| (a.clone(), Some(v.clone())))
            .chain(gone.map(|a| (a.clone(), None)))
            .collect();
        self.first_seen.retain(|a, (v, _)| all.get(a) == Some(v));
        for (a, v) in all {
            self.first_seen.entry(a).or_insert((v, now));
        }
        self.first_seen
            .iter()
            .filter(|(_, (_, since))| now.duration_since(*since) >= self.delay)
            .filter(|(a, (v, _))| self.effective.get(a) != v.as_ref())
            .map(|(a, (v, _))| Due {
                address: a.clone(),
                old: self.effective.get(a).cloned(),
                new: v.clone(),
            })
            .collect()
    }

    /// Records that `due` took effect.
    pub fn applied(&mut self, due: &[Due<V, K>]) {
        for d in due {
            match &d.new {
                Some(v) => self.effective.insert(d.address.clone(), v.clone()),
                None => self.effective.remove(&d.address),
            };
        }
    }

    /// Forgets what is in effect for the values `gone` accepts (a wire plugged in anew).
    pub fn forget(&mut self, gone: impl Fn(&V) -> bool) {
        self.effective.retain(|_, v| !gone(v));
    }

    pub fn effective(&self) -> &BTreeMap<K, V> {
        &self.effective
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_due_once_said_for_the_delay_and_only_once() {
        let mut f = Follow::new(Duration::from_millis(100));
        let t0 = Instant::now();
        let a: IpAddr = "198.51.100.7".parse().unwrap();
        let said = BTreeMap::from([(a, 1)]);
        assert!(f.due(&said, t0).is_empty());
        let due = f.due(&said, t0 + Duration::from_millis(100));
        assert_eq!(
            due,
            [Due {
                address: a,
                old: None,
                new: Some(1)
            }]
        );
        f.applied(&due);
        assert!(f.due(&said, t0 + Duration::from_millis(200)).is_empty());
        assert!(f
            .due(&BTreeMap::new(), t0 + Duration::from_millis(250))
            .is_empty());
        let due = f.due(&BTreeMap::new(), t0 + Duration::from_millis(350));
        assert_eq!(due[0].new, None);
        assert_eq!(due[0].old, Some(1));
    }
}
