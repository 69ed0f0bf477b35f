//! The protobuf codec of every schoolfleet service and client: prost, with
//! small starting buffers.
//!
//! tonic gives every call, and every long-lived stream, an encode and a
//! decode buffer of 8 KiB each at the start: about 160 MiB for a server
//! holding 10,000 agent streams (10,000 × 16 KiB, derived from a heap
//! profile at 500 agents), mostly empty: heartbeats are a few dozen bytes. The buffers still grow to the largest message when one comes
//! (an inventory report); only the starting size is smaller.

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Starting size of a call's encode and decode buffer.
const START_BUFFER_BYTES: usize = 1024;

/// Encoded bytes after which a stream hands what it has to the transport
/// (tonic's default).
const YIELD_THRESHOLD_BYTES: usize = 32 * 1024;

/// [`ProstCodec`] with [`START_BUFFER_BYTES`] buffers.
#[derive(Debug, Clone, Copy)]
pub struct LeanCodec<T, U>(std::marker::PhantomData<(T, U)>);

impl<T, U> Default for LeanCodec<T, U> {
    fn default() -> Self {
        LeanCodec(std::marker::PhantomData)
    }
}

fn settings() -> BufferSettings {
    BufferSettings::new(START_BUFFER_BYTES, YIELD_THRESHOLD_BYTES)
}

impl<T, U> Codec for LeanCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(settings())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::codec::{Decoder, Encoder};

    #[test]
    fn buffers_start_small_and_keep_the_default_yield() {
        // BufferSettings hides its fields; its Debug shows them.
        let lean = format!("{:?}", BufferSettings::new(1024, 32 * 1024));
        assert_ne!(lean, format!("{:?}", BufferSettings::default()));
        let mut codec = LeanCodec::<crate::v1::Heartbeat, crate::v1::Heartbeat>::default();
        assert_eq!(format!("{:?}", codec.encoder().buffer_settings()), lean);
        assert_eq!(format!("{:?}", codec.decoder().buffer_settings()), lean);
    }
}
