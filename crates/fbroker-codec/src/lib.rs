//! MQTT packet codec. Pure functions over byte buffers: no sockets, no
//! timers, no allocation beyond the decoded packet itself.

mod types;
pub use types::*;
