//! What every service needs from the process it runs in, whichever mode
//! wires it.

use std::sync::Arc;

use crate::bus::Bus;
use crate::metrics::Metrics;
use crate::tasks::Spawner;

/// What every service needs from its process. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    pub bus: Arc<dyn Bus>,
    pub metrics: Metrics,
    pub spawner: Spawner,
}
