//! Event streams: the messages producers send (the Segment Spec, which RudderStack's clients
//! speak too), checked and normalized on arrival, and the store that keeps them durably.

pub mod filter;
pub mod layout;
pub mod message;
pub mod store;
