//! The software "secure element" behind a virtual card: a trussed service with its own
//! RAM store, an OS-seeded RNG, and the backends piv-authenticator needs (trussed-auth for
//! PINs, trussed-staging for chunked I/O, key wrapping and HPKE).
//!
//! trussed's stock `virt::with_platform` seeds its RNG with a constant, so every card
//! would generate the same keys; two agents' cards must not, hence our own platform.

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng as _;
use trussed::backend::BackendId;
use trussed::serde_extensions::{ExtensionDispatch, ExtensionId, ExtensionImpl};
use trussed::service::ServiceResources;
use trussed::types::{Context, CoreContext};
use trussed::virt::{self, StoreConfig};
use trussed_auth::AuthExtension;
use trussed_auth_backend::{AuthBackend, AuthContext, FilesystemLayout};
use trussed_chunked::ChunkedExtension;
use trussed_core::api::{reply, request, Reply, Request};
use trussed_core::types::Location;
use trussed_hpke::HpkeExtension;
use trussed_staging::{StagingBackend, StagingContext};
use trussed_wrap_key_to_file::WrapKeyToFileExtension;

/// trussed client as the PIV applet sees it.
pub(crate) type CardClient<'a> = virt::Client<'a, CardDispatch>;

/// The backends a card's client may use, in the order trussed tries them.
const BACKENDS: &[BackendId<Backend>] =
    &[BackendId::Custom(Backend::Auth), BackendId::Custom(Backend::Staging), BackendId::Core];

/// Custom trussed backends of the card.
#[derive(Debug)]
pub(crate) enum Backend {
    Auth,
    Staging,
}

/// trussed extensions the PIV applet calls, with the wire ids our dispatch assigns.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Extension {
    Auth = 0,
    Chunked = 1,
    WrapKeyToFile = 2,
    Hpke = 3,
}

impl From<Extension> for u8 {
    fn from(e: Extension) -> u8 {
        e as u8
    }
}

impl TryFrom<u8> for Extension {
    type Error = trussed_core::Error;
    fn try_from(id: u8) -> Result<Self, Self::Error> {
        match id {
            0 => Ok(Extension::Auth),
            1 => Ok(Extension::Chunked),
            2 => Ok(Extension::WrapKeyToFile),
            3 => Ok(Extension::Hpke),
            _ => Err(trussed_core::Error::FunctionNotSupported),
        }
    }
}

/// Per-client state of the custom backends.
#[derive(Default)]
pub(crate) struct CardContext {
    auth: AuthContext,
    staging: StagingContext,
}

/// Routes trussed requests to the auth backend (PINs), the staging backend (the other
/// extensions) or trussed's core.
pub(crate) struct CardDispatch {
    auth: AuthBackend,
    staging: StagingBackend,
}

impl CardDispatch {
    fn new() -> Self {
        CardDispatch {
            auth: AuthBackend::new(Location::Internal, FilesystemLayout::V0),
            staging: StagingBackend::new(),
        }
    }
}

impl ExtensionDispatch for CardDispatch {
    type BackendId = Backend;
    type Context = CardContext;
    type ExtensionId = Extension;

    fn core_request<P: trussed::Platform>(
        &mut self,
        _backend: &Backend,
        _ctx: &mut Context<CardContext>,
        _request: &Request,
        _resources: &mut ServiceResources<P>,
    ) -> Result<Reply, trussed_core::Error> {
        // Neither custom backend overrides core requests: fall through to trussed's core.
        Err(trussed_core::Error::RequestNotAvailable)
    }

    fn extension_request<P: trussed::Platform>(
        &mut self,
        backend: &Backend,
        extension: &Extension,
        ctx: &mut Context<CardContext>,
        request: &request::SerdeExtension,
        resources: &mut ServiceResources<P>,
    ) -> Result<reply::SerdeExtension, trussed_core::Error> {
        let core: &mut CoreContext = &mut ctx.core;
        match backend {
            Backend::Auth => match extension {
                Extension::Auth => ExtensionImpl::<AuthExtension>::extension_request_serialized(
                    &mut self.auth,
                    core,
                    &mut ctx.backends.auth,
                    request,
                    resources,
                ),
                // Not the auth backend's: let trussed try the next backend.
                _ => Err(trussed_core::Error::RequestNotAvailable),
            },
            Backend::Staging => {
                let serve: StagingHandler<P> = match extension {
                    Extension::Chunked => ExtensionImpl::<ChunkedExtension>::extension_request_serialized,
                    Extension::WrapKeyToFile => ExtensionImpl::<WrapKeyToFileExtension>::extension_request_serialized,
                    Extension::Hpke => ExtensionImpl::<HpkeExtension>::extension_request_serialized,
                    Extension::Auth => return Err(trussed_core::Error::RequestNotAvailable),
                };
                serve(&mut self.staging, core, &mut ctx.backends.staging, request, resources)
            }
        }
    }
}

/// How the staging backend serves one of its extensions.
type StagingHandler<P> = fn(
    &mut StagingBackend,
    &mut CoreContext,
    &mut StagingContext,
    &request::SerdeExtension,
    &mut ServiceResources<P>,
) -> Result<reply::SerdeExtension, trussed_core::Error>;

/// Tells trussed clients which wire id each extension has on this dispatch.
macro_rules! extension_ids {
    ($($ext:ty => $id:ident),* $(,)?) => {$(
        impl ExtensionId<$ext> for CardDispatch {
            type Id = Extension;
            const ID: Extension = Extension::$id;
        }
    )*};
}

extension_ids! {
    AuthExtension => Auth,
    ChunkedExtension => Chunked,
    WrapKeyToFileExtension => WrapKeyToFile,
    HpkeExtension => Hpke,
}

/// trussed platform of one card: its store, an RNG seeded from the OS, a no-op UI.
struct CardPlatform<'a> {
    rng: ChaCha8Rng,
    store: virt::Store<'a>,
    ui: virt::UserInterface,
}

impl<'a> trussed::platform::Platform for CardPlatform<'a> {
    type R = ChaCha8Rng;
    type S = virt::Store<'a>;
    type UI = virt::UserInterface;

    fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }
    fn store(&self) -> virt::Store<'a> {
        self.store
    }
    fn user_interface(&mut self) -> &mut virt::UserInterface {
        &mut self.ui
    }
}

/// Run `f` with a trussed client backed by a fresh RAM store (a factory-new card) and an
/// RNG seeded with `seed` (take it from the OS). Returns when `f` returns; the store is
/// gone then.
pub(crate) fn with_fresh_card<R>(seed: [u8; 32], f: impl FnOnce(CardClient<'_>) -> R) -> R {
    let mut store = StoreConfig::ram();
    store.with_store(|store| {
        let platform = CardPlatform { rng: ChaCha8Rng::from_seed(seed), store, ui: virt::UserInterface::new() };
        let channel = trussed::pipe::TrussedChannel::new();
        let mut runner = virt::Runner::new();
        // A freshly created channel always splits (it can be split once only).
        let Some((requester, responder)) = channel.split() else { unreachable!("a new trussed channel splits") };
        runner.add_endpoint(responder, "piv", BACKENDS);
        let client = CardClient::new(requester, runner.syscall(), None);
        runner.run(platform, CardDispatch::new(), || f(client))
    })
}
