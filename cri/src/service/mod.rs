//! The CRI gRPC services. The only place (with `server.rs`) that knows the
//! protobuf types; everything below takes plain Rust types.

pub mod convert;
pub mod convert_container;
pub mod image;
pub mod runtime;

/// Implement the listed CRI methods as `Unimplemented`, naming the RPC, so a
/// caller gets a clear answer while the feature is being built. It writes the
/// signature `#[async_trait]` would produce, because that attribute runs
/// before this macro is expanded and cannot see the methods inside it.
macro_rules! unimplemented_rpcs {
    ($($name:ident($req:ident) -> $resp:ident;)*) => {
        $(
            fn $name<'life0, 'async_trait>(
                &'life0 self,
                _request: tonic::Request<k8s_cri::v1::$req>,
            ) -> ::std::pin::Pin<Box<dyn ::std::future::Future<
                Output = Result<tonic::Response<k8s_cri::v1::$resp>, tonic::Status>,
            > + Send + 'async_trait>>
            where
                'life0: 'async_trait,
                Self: 'async_trait,
            {
                Box::pin(async move {
                    Err(crate::error::Error::Unimplemented { what: stringify!($name) }.into())
                })
            }
        )*
    };
}
pub(crate) use unimplemented_rpcs;
