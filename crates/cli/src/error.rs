//! The library's one error type: the engine's or the hub's, with their messages unchanged.

/// Everything the library can fail with.
#[derive(Debug)]
pub enum Error {
    /// Loading, tokenizing, generating: the engine's error, message as the CLI prints it.
    Engine(engine::EngineError),
    /// Finding or downloading a model on the Hugging Face hub.
    Hub(hub::HubError),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Engine(e) => e.fmt(f),
            Error::Hub(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Engine(e) => Some(e),
            Error::Hub(e) => Some(e),
        }
    }
}

impl From<engine::EngineError> for Error {
    fn from(e: engine::EngineError) -> Self {
        Error::Engine(e)
    }
}

impl From<hub::HubError> for Error {
    fn from(e: hub::HubError) -> Self {
        Error::Hub(e)
    }
}
