//! An in-memory cloud for unit tests: ENIs in a map, every call recorded.

use std::net::IpAddr;
use std::sync::Mutex;

use super::{AddressMove, Cloud, CloudError, Eni};

#[derive(Default)]
pub struct FakeCloud {
    pub enis: Mutex<Vec<Eni>>,
    /// (action, ENI) for every mutating call.
    pub calls: Mutex<Vec<(&'static str, String)>>,
    /// When set, every mutating call fails with it.
    pub fail_with: Mutex<Option<CloudError>>,
}

impl FakeCloud {
    pub fn holder_of(&self, address: IpAddr) -> Vec<String> {
        self.enis
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.holds(address))
            .map(|e| e.id.clone())
            .collect()
    }

    fn mutate(&self, action: &'static str, eni: &str) -> Result<(), CloudError> {
        self.calls.lock().unwrap().push((action, eni.to_string()));
        match self.fail_with.lock().unwrap().clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Cloud for FakeCloud {
    async fn subnet_enis(&self, subnet: &str) -> Result<Vec<Eni>, CloudError> {
        let enis = self.enis.lock().unwrap();
        Ok(enis
            .iter()
            .filter(|e| e.subnet_id == subnet)
            .cloned()
            .collect())
    }

    async fn enis(&self, ids: &[String]) -> Result<Vec<Eni>, CloudError> {
        let enis = self.enis.lock().unwrap();
        Ok(enis
            .iter()
            .filter(|e| ids.contains(&e.id))
            .cloned()
            .collect())
    }

    async fn assign(&self, eni: &str, moves: &[AddressMove]) -> Result<(), CloudError> {
        self.mutate("Assign", eni)?;
        let mut enis = self.enis.lock().unwrap();
        for m in moves {
            for e in enis.iter_mut() {
                e.secondary.retain(|a| *a != m.address);
            }
        }
        if let Some(target) = enis.iter_mut().find(|e| e.id == eni) {
            target.secondary.extend(moves.iter().map(|m| m.address));
        }
        Ok(())
    }

    async fn unassign(&self, eni: &str, addresses: &[IpAddr]) -> Result<(), CloudError> {
        self.mutate("Unassign", eni)?;
        let mut enis = self.enis.lock().unwrap();
        if let Some(e) = enis.iter_mut().find(|e| e.id == eni) {
            e.secondary.retain(|a| !addresses.contains(a));
        }
        Ok(())
    }
}
