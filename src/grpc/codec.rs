//! The protobuf codec of every checkout.v1 service (build.rs points tonic-prost-build's
//! `codec_path` here). It is tonic-prost's `ProstCodec` except for one thing: a request body
//! that does not decode is the client's fault, so it becomes INVALID_ARGUMENT with a fixed
//! message naming only the expected message type. tonic-prost answers INTERNAL with the
//! decoder's text, which counts as a server failure in metrics and alerts, and quotes the
//! client's field paths back. The decoder's text is logged here (at INFO, with the RPC span
//! of crate::grpc::rpc_layer around it) for whoever debugs a client, never sent.
use crate::{domain::Invalid, error::AppError};
use prost::Message;
use std::marker::PhantomData;
use tonic::{
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
    Status,
};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// tonic allocates this much per response (per stream, for as long as a stream lasts) to
/// encode into; a message that needs more grows it. tonic's default, 8 KiB, is far above
/// our replies (a session is about 250 bytes) and cost a freshly touched page per open
/// WatchSession stream, plus the allocator churn of freeing 10,000 of them in a fan-out.
const ENCODE_BUFFER_BYTES: usize = 1024;
/// tonic's default: a stream hands its encoded messages to HTTP/2 at least this often.
const YIELD_THRESHOLD_BYTES: usize = 32 * 1024;

/// Generated code builds it with `Default` for each method, like `ProstCodec`.
#[derive(Debug, Clone)]
pub struct CheckoutCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for CheckoutCodec<T, U> {
    fn default() -> Self {
        CheckoutCodec(PhantomData)
    }
}

impl<T, U> Codec for CheckoutCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = CheckedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::new(
            ENCODE_BUFFER_BYTES,
            YIELD_THRESHOLD_BYTES,
        ))
    }

    fn decoder(&mut self) -> Self::Decoder {
        CheckedDecoder(ProstCodec::<T, U>::default().decoder())
    }
}

/// `ProstDecoder` with its errors turned into client errors.
#[derive(Debug, Clone)]
pub struct CheckedDecoder<U>(ProstDecoder<U>);

impl<U: Message + Default> Decoder for CheckedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|decoder| {
            let name = message_name::<U>();
            tracing::info!(
                message = name,
                error = decoder.message(),
                "client error: request body could not be decoded"
            );
            malformed(name)
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

/// `checkout::pb::CreateSessionRequest` → `CreateSessionRequest`: the proto message name,
/// without needing prost's `Name` impls.
fn message_name<U>() -> &'static str {
    let full = std::any::type_name::<U>();
    full.rsplit("::").next().unwrap_or(full)
}

/// The answer to a body that is not a valid `name`: INVALID_ARGUMENT through the error
/// policy (crate::error), so it carries a BadRequest violation like every other.
pub fn malformed(name: &str) -> Status {
    AppError::Invalid(Invalid::field(
        "request",
        format!("Malformed request: the message could not be decoded as {name}"),
    ))
    .into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn message_name_is_the_last_path_segment() {
        assert_eq!(
            super::message_name::<crate::pb::CreateSessionRequest>(),
            "CreateSessionRequest"
        );
    }
}
