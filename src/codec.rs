//! The gRPC codec of workspaced's services: prost encoding, except that a request that is not
//! valid protobuf (bad wire format, invalid UTF-8 in a string) is bad input, answered
//! INVALID_ARGUMENT with the usual details, where tonic's stock codec answers INTERNAL.

use std::marker::PhantomData;

use prost::Message;
use tonic::{
    Status,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
};
use tonic_prost::{ProstCodec, ProstEncoder};

use crate::error::Error;

/// Prost encoding with bad-input decoding errors; named by `build.rs` as the codec path.
#[derive(Debug, Clone)]
pub struct WorkspacedCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for WorkspacedCodec<T, U> {
    fn default() -> Self {
        WorkspacedCodec(PhantomData)
    }
}

impl<T, U> Codec for WorkspacedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = BadInputDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        BadInputDecoder(PhantomData)
    }
}

/// Decodes `U`, answering INVALID_ARGUMENT for bytes that are not a `U`.
#[derive(Debug, Clone)]
pub struct BadInputDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for BadInputDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|e| {
            Error::invalid("request", format!("is not a valid protobuf message: {e}")).into()
        })
    }
}
