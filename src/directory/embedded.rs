//! The embedded directory: SQLite (bundled) in `<data_dir>/directory.sqlite`.
