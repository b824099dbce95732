//! What a broker's refusal means. lapin hands back the AMQP reply code inside its error;
//! declaring and inspecting the topology must tell "missing" and "exists with other
//! properties" apart from every other failure, which is passed on.

use lapin::protocol::{AMQPErrorKind, AMQPSoftError};

/// The broker's 404: the exchange or queue named does not exist.
pub fn is_not_found(error: &lapin::Error) -> bool {
    is_soft(error, AMQPSoftError::NOTFOUND)
}

/// The broker's 406: the object exists with different properties.
pub fn is_precondition_failed(error: &lapin::Error) -> bool {
    is_soft(error, AMQPSoftError::PRECONDITIONFAILED)
}

fn is_soft(error: &lapin::Error, code: AMQPSoftError) -> bool {
    matches!(
        error.kind(),
        lapin::ErrorKind::ProtocolError(amqp) if amqp.kind() == &AMQPErrorKind::Soft(code)
    )
}
