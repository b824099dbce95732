//! W3C Trace Context: the `traceparent` value that ties one change together across the
//! services. The producer takes it from the HTTP request (or starts a trace), sends it in
//! the message's headers, and the consumer continues it, so the same `trace_id` appears on
//! the request's log lines, the publish, and the processing.
//!
//! Format (version 00): `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`.

use std::fmt;

/// The HTTP header and the AMQP message header carrying the context.
pub const TRACEPARENT: &str = "traceparent";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: u128,
    /// The id of the span that made this context: the parent of the next hop's span.
    span_id: u64,
    sampled: bool,
}

impl TraceContext {
    /// A new trace, for a request that did not bring one.
    pub fn new_root() -> Self {
        Self {
            trace_id: nonzero_random_u128(),
            span_id: nonzero_random_u64(),
            sampled: true,
        }
    }

    /// Parses a `traceparent` value; `None` when it is malformed, so the caller starts a
    /// new trace instead of propagating garbage (as the specification asks).
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (version, trace_id, span_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let well_formed = version.len() == 2
            && version != "ff"
            && trace_id.len() == 32
            && span_id.len() == 16
            && flags.len() == 2
            && [version, trace_id, span_id, flags]
                .iter()
                .all(|part| part.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        // Version 00 has exactly four fields; later versions may append more.
        if !well_formed || (version == "00" && parts.next().is_some()) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace_id, 16)
            .ok()
            .filter(|id| *id != 0)?;
        let span_id = u64::from_str_radix(span_id, 16)
            .ok()
            .filter(|id| *id != 0)?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(Self {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The context for the next hop: same trace, a new span id.
    pub fn child(&self) -> Self {
        Self {
            span_id: nonzero_random_u64(),
            ..*self
        }
    }

    /// Trace id, span id and the sampled flag, for exporters.
    pub fn parts(&self) -> (u128, u64, bool) {
        (self.trace_id, self.span_id, self.sampled)
    }

    /// The 32-hex-digit trace id that log lines carry.
    pub fn trace_id(&self) -> String {
        format!("{:032x}", self.trace_id)
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }
}

/// Random ids from v4 UUIDs' random bits: already a dependency, and good enough for ids
/// that only need to be unique.
fn nonzero_random_u128() -> u128 {
    loop {
        let id = uuid::Uuid::new_v4().as_u128();
        if id != 0 {
            return id;
        }
    }
}

fn nonzero_random_u64() -> u64 {
    loop {
        let id = uuid::Uuid::new_v4().as_u64_pair().1;
        if id != 0 {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_round_trips() {
        let context = TraceContext::parse(EXAMPLE).unwrap();
        assert_eq!(context.to_string(), EXAMPLE);
        assert_eq!(context.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn a_child_keeps_the_trace_and_changes_the_span() {
        let parent = TraceContext::parse(EXAMPLE).unwrap();
        let child = parent.child();
        assert_eq!(child.trace_id(), parent.trace_id());
        assert_ne!(child.to_string(), parent.to_string());
        assert_eq!(TraceContext::parse(&child.to_string()), Some(child));
    }

    #[test]
    fn malformed_values_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-xyz92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn new_traces_are_valid_and_distinct() {
        let (a, b) = (TraceContext::new_root(), TraceContext::new_root());
        assert_ne!(a.trace_id(), b.trace_id());
        assert_eq!(TraceContext::parse(&a.to_string()), Some(a));
    }
}
