//! Workflows an upgrade replaced: it stops each (drained) and deploys its
//! expression again as a new workflow. Whoever watches the old one (the
//! deploy's master waiting for its workflow to end) follows it here.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

use crate::script::WorkflowRef;

pub struct Succession {
    /// True while an upgrade replaces the workers and workflows.
    upgrading: watch::Sender<bool>,
    /// The old id's successor.
    replaced: Mutex<HashMap<u64, WorkflowRef>>,
}

impl Default for Succession {
    fn default() -> Self {
        Succession { upgrading: watch::channel(false).0, replaced: Mutex::new(HashMap::new()) }
    }
}

impl Succession {
    /// Marks an upgrade under way (or over).
    pub fn set_upgrading(&self, on: bool) {
        self.upgrading.send_replace(on);
    }

    /// Waits until no upgrade is under way.
    pub async fn upgrade_done(&self) {
        let mut rx = self.upgrading.subscribe();
        // Fails only once the sender is dropped, and `self` holds it.
        let _ = rx.wait_for(|on| !on).await;
    }

    /// Records that `new` replaces `old`.
    pub fn replace(&self, old: WorkflowRef, new: WorkflowRef) {
        self.replaced.lock().expect("replaced lock").insert(old.id, new);
    }

    /// The workflow that replaced `r`, following every upgrade since.
    pub fn successor(&self, r: WorkflowRef) -> Option<WorkflowRef> {
        let replaced = self.replaced.lock().expect("replaced lock");
        let mut at = *replaced.get(&r.id)?;
        while let Some(next) = replaced.get(&at.id) {
            at = *next;
        }
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successors_chain_across_upgrades() {
        let s = Succession::default();
        let r = |id| WorkflowRef { id };
        assert_eq!(s.successor(r(1)), None);
        s.replace(r(1), r(4));
        s.replace(r(4), r(9));
        assert_eq!(s.successor(r(1)), Some(r(9)));
        assert_eq!(s.successor(r(4)), Some(r(9)));
    }
}
