//! Bindings of `likeness:style@0.2.0` (`wit/style.wit`, world `plugin`): the exports are
//! called asynchronously (so epoch deadlines yield to tokio); the imports (`log`, `canvas`,
//! `policy`) may trap, which is how a host call refuses a stale handle or a budget overrun.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    imports: { default: trappable },
    exports: { default: async },
    with: {
        "likeness:style/canvas.image": crate::runtime::canvas::Image,
    },
});

pub use likeness::style::log::Level;
