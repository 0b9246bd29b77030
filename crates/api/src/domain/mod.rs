//! Operations on organizations and users that more than the HTTP routes need: the CLI
//! (`workspaces provision`, `keys create`) and sign-in admission call them too.

pub mod organizations;
pub mod users;
