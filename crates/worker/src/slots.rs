//! Fair sharing of a worker's slots between organizations: one organization holds at most a
//! set number of this process's slots at once, so its stuck or slow executions can never take
//! every slot while other organizations' executions wait.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use uuid::Uuid;

/// Slots held per organization in this process.
#[derive(Debug)]
pub struct OrganizationSlots {
    limit: usize,
    held: Mutex<HashMap<Uuid, usize>>,
}

impl OrganizationSlots {
    /// At most `limit` slots per organization.
    pub fn new(limit: usize) -> Self {
        Self { limit: limit.max(1), held: Mutex::default() }
    }

    /// A slot for `organization`, or `None` while it holds its limit.
    pub fn take(self: &Arc<Self>, organization: Uuid) -> Option<Slot> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let count = held.entry(organization).or_default();
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(Slot { slots: self.clone(), organization })
    }
}

/// One organization's slot; given back when dropped.
pub struct Slot {
    slots: Arc<OrganizationSlots>,
    organization: Uuid,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = held.get_mut(&self.organization) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.organization);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_each_organization_separately() {
        let slots = Arc::new(OrganizationSlots::new(2));
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let first = slots.take(a).expect("first slot");
        let _second = slots.take(a).expect("second slot");
        assert!(slots.take(a).is_none(), "a holds its limit");
        let _other = slots.take(b).expect("b is not limited by a");
        drop(first);
        assert!(slots.take(a).is_some(), "a slot given back can be taken again");
    }
}
