//! The contract's gRPC codec: tonic's prost codec with smaller buffers.
//!
//! tonic gives every call an 8 KiB encode buffer (and every stream an 8 KiB decode buffer) by
//! default. The contract's messages are mostly far smaller (a chat request of a few hundred
//! bytes, stream deltas of tens), and a hub holding 1,000 open streams paid 8 MiB for buffers
//! it barely used (docs/benchmarks.md, "Memory"). These start at [`BUFFER_SIZE`] and grow as a
//! message needs (tonic reserves what each message takes), so nothing else changes.

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Initial size of the encode and decode buffers of one call, bytes.
pub const BUFFER_SIZE: usize = 1024;

/// tonic's default: past this many buffered bytes an encoder yields (unchanged).
const YIELD_THRESHOLD: usize = 32 * 1024;

/// [`ProstCodec`] with [`BUFFER_SIZE`] buffers (named as the generated code's `codec_path`).
#[derive(Debug, Clone, Copy)]
pub struct ContractCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ContractCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for ContractCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }
}
