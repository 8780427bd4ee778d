//! Typed ids of routes, upstreams and issuers, so one kind cannot stand for another.

use std::fmt;

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name(usize);

        impl $name {
            /// The id of the entry at `position` in the collection it is compiled into.
            pub const fn at(position: usize) -> Self {
                $name(position)
            }

            /// Its place in that collection: for the collection's own accessor, not for indexing
            /// anything else.
            pub const fn position(self) -> usize {
                self.0
            }
        }

        /// The bare number, as configuration keys write it (`routes[2]`).
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id! {
    /// An issuer: its place in the list its key cache was built from (`Config::issuers`, the login
    /// providers, or the clients with a `jwks_uri`), so the key cache finds its keys by it.
    IssuerId
}

id! {
    /// An upstream: its place in `Config::upstreams`, and so in each generation's runtime pools.
    UpstreamId
}

id! {
    /// A route: its place in `[[routes]]`, which is also its place in `Config::routes` (a route
    /// refused for a problem refuses the whole configuration).
    RouteId
}
