//! Virtual PIV card for tests and the demo (not yet implemented).
