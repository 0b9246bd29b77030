//! Event streams: the messages producers send (the Segment Spec, which RudderStack's clients
//! speak too), checked and normalized on arrival.

pub mod message;
