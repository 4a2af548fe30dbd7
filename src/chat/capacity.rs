//! The cap on generations running at once on this instance: a burst beyond it is refused
//! up front (`companion_busy`, before anything is stored) instead of becoming a wall of
//! upstream 429s. Each running generation holds one [`Slot`] until it ends.
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Capacity {
    /// `None`: no cap.
    slots: Option<Arc<Semaphore>>,
    max: usize,
}

/// Held by one generation; its place is given back when dropped.
pub struct Slot {
    _permit: Option<OwnedSemaphorePermit>,
}

impl Capacity {
    /// `max` generations at once; 0 means no cap.
    pub fn new(max: u32) -> Self {
        let max = max as usize;
        Capacity { slots: (max > 0).then(|| Arc::new(Semaphore::new(max))), max }
    }

    /// A slot, or `None` when every one is taken.
    pub fn try_take(&self) -> Option<Slot> {
        match &self.slots {
            None => Some(Slot { _permit: None }),
            Some(slots) => slots.clone().try_acquire_owned().ok().map(|permit| Slot { _permit: Some(permit) }),
        }
    }

    /// Slots taken now (0 without a cap, which counts nothing).
    pub fn in_use(&self) -> usize {
        self.slots.as_ref().map_or(0, |slots| self.max - slots.available_permits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_run_out_at_the_cap_and_come_back_when_dropped() {
        let capacity = Capacity::new(2);
        let first = capacity.try_take().expect("a first slot");
        let second = capacity.try_take().expect("a second slot");
        assert!(capacity.try_take().is_none(), "a third is refused");
        assert_eq!(capacity.in_use(), 2);
        drop(first);
        assert!(capacity.try_take().is_some(), "a dropped slot is free again");
        drop(second);
    }

    #[test]
    fn a_zero_cap_never_refuses() {
        let capacity = Capacity::new(0);
        let slots: Vec<Slot> = (0..10_000).filter_map(|_| capacity.try_take()).collect();
        assert_eq!(slots.len(), 10_000);
    }
}
