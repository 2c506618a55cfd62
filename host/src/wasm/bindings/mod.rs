//! Host-side bindings of the two style worlds the host links: [`v0_2`] (`wit/style.wit`,
//! world `plugin`), what styles are written against, and [`v0_1`] (`wit/v0.1/style.wit`,
//! world `style`), kept so that packages built against 0.1.0 keep loading until 0.3.0. Each
//! converts its generated types to the host's own (`likeness_contract`) with
//! [`convert::Edge`], and nowhere else.

pub mod convert;
pub mod v0_1;
pub mod v0_2;
