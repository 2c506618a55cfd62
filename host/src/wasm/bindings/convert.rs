//! The conversion between a contract version's generated types and the host's own
//! (`likeness_contract`): [`Edge::edge`] maps a value across, field by field. Records and enums
//! of the same shape are mapped by the macros here; each version's module adds the rest.

/// A value's counterpart on the other side of the WIT edge.
pub trait Edge<T> {
    /// The value as the other side's type.
    fn edge(self) -> T;
}

macro_rules! same {
    ($($t:ty),*) => { $(impl Edge<$t> for $t { fn edge(self) -> $t { self } })* };
}
same!(u32, u64, i64, f32, f64, bool, String);

impl<A: Edge<B>, B> Edge<Vec<B>> for Vec<A> {
    fn edge(self) -> Vec<B> {
        self.into_iter().map(Edge::edge).collect()
    }
}

impl<A: Edge<B>, B> Edge<Option<B>> for Option<A> {
    fn edge(self) -> Option<B> {
        self.map(Edge::edge)
    }
}

impl<A: Edge<C>, B: Edge<D>, C, D> Edge<(C, D)> for (A, B) {
    fn edge(self) -> (C, D) {
        (self.0.edge(), self.1.edge())
    }
}

/// Records of the same fields, both ways: `records!(w::Point = c::Point { x, y })`, where `w`
/// and `c` are modules in scope.
macro_rules! records {
    ($($wm:ident::$wt:ident = $hm:ident::$ht:ident { $($field:ident),* $(,)? })*) => {$(
        impl $crate::wasm::bindings::convert::Edge<$hm::$ht> for $wm::$wt {
            fn edge(self) -> $hm::$ht {
                $hm::$ht { $($field: $crate::wasm::bindings::convert::Edge::edge(self.$field)),* }
            }
        }
        impl $crate::wasm::bindings::convert::Edge<$wm::$wt> for $hm::$ht {
            fn edge(self) -> $wm::$wt {
                $wm::$wt { $($field: $crate::wasm::bindings::convert::Edge::edge(self.$field)),* }
            }
        }
    )*};
}

/// Enums of the same cases, both ways: `enums!(w::ControlKind = c::ControlKind { Canny, .. })`.
macro_rules! enums {
    ($($wm:ident::$wt:ident = $hm:ident::$ht:ident { $($case:ident),* $(,)? })*) => {$(
        impl $crate::wasm::bindings::convert::Edge<$hm::$ht> for $wm::$wt {
            fn edge(self) -> $hm::$ht {
                match self { $($wm::$wt::$case => $hm::$ht::$case),* }
            }
        }
        impl $crate::wasm::bindings::convert::Edge<$wm::$wt> for $hm::$ht {
            fn edge(self) -> $wm::$wt {
                match self { $($hm::$ht::$case => $wm::$wt::$case),* }
            }
        }
    )*};
}

pub(crate) use {enums, records};
