//! What one worker asks of a node, in whole units, and what a node still has free.

/// Resources of one worker, or free on one node: CPU in millicores, memory in bytes, GPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amount {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub gpus: u32,
}

impl Amount {
    /// Whether `request` fits in what is left of `self`.
    pub fn fits(&self, request: &Amount) -> bool {
        request.cpu_millis <= self.cpu_millis && request.memory_bytes <= self.memory_bytes && request.gpus <= self.gpus
    }

    /// Takes `request` out of `self`; the caller checked that it fits.
    pub fn take(&mut self, request: &Amount) {
        self.cpu_millis -= request.cpu_millis;
        self.memory_bytes -= request.memory_bytes;
        self.gpus -= request.gpus;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_fits_until_one_resource_runs_out() {
        let mut node = Amount { cpu_millis: 2000, memory_bytes: 4 << 30, gpus: 0 };
        let worker = Amount { cpu_millis: 1000, memory_bytes: 1 << 30, gpus: 0 };
        assert!(node.fits(&worker));
        node.take(&worker);
        node.take(&worker);
        assert!(!node.fits(&worker), "the CPU is used up");
        assert!(!Amount { cpu_millis: 8000, memory_bytes: 8 << 30, gpus: 0 }.fits(&Amount { gpus: 1, ..worker }));
    }
}
