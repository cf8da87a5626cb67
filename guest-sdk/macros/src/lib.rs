//! Procedural macros of the wasmfabric SDK. Use them through the `fabric`
//! crate: `#[fabric::remote]`, `#[fabric::actor]`, `#[fabric::main]`.

mod actor;
mod options;
mod remote;
mod signature;

use proc_macro::TokenStream;

/// Makes a function callable as a task: `name::remote(args..)` submits it
/// and returns an `ObjectRef` to its result; `name::options(opts)` overrides
/// the declared resources for one call.
///
/// Options: `num_cpus = N`, `num_gpus = N`, `memory = BYTES`,
/// `resources(name = N, ..)`, `max_retries = N`, `retry_exceptions = BOOL`,
/// `name = "registered-name"`, `num_returns = N` (one reference per value),
/// `backpressure = N` (for a generator).
///
/// A function whose return type is `Generator<T>` (or `Generator<T, E>`,
/// or either inside a `Result`) is a streaming generator: `remote` returns
/// an `ObjectStream<T>` of its items. The same holds for an actor method,
/// whose generator may borrow the actor.
#[proc_macro_attribute]
pub fn remote(attr: TokenStream, item: TokenStream) -> TokenStream {
    remote::expand(attr.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// On a struct: makes it an actor class (and defines `<Name>Handle`, which
/// carries its remote methods). On its `impl` block: `new` becomes the
/// remote constructor (`Name::remote(args..)`) and every method with a
/// `&self`/`&mut self` receiver becomes a remote method.
#[proc_macro_attribute]
pub fn actor(attr: TokenStream, item: TokenStream) -> TokenStream {
    actor::expand(attr.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Marks the driver: the function `fabric run` calls. It takes no
/// arguments and returns `()` or a `Result<(), E>` with `E: Display`.
#[proc_macro_attribute]
pub fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand_main(attr.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

fn expand_main(
    attr: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> syn::Result<proc_macro2::TokenStream> {
    if !attr.is_empty() {
        return Err(syn::Error::new_spanned(
            attr,
            "#[fabric::main] takes no options",
        ));
    }
    let f: syn::ItemFn = syn::parse2(item)?;
    if let Some(a) = &f.sig.asyncness {
        return Err(syn::Error::new_spanned(a, "the driver cannot be async"));
    }
    if !f.sig.inputs.is_empty() {
        return Err(syn::Error::new_spanned(
            &f.sig.inputs,
            "the driver takes no arguments; read them with std::env::args()",
        ));
    }
    if !f.sig.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &f.sig.generics,
            "the driver cannot be generic",
        ));
    }
    let name = &f.sig.ident;
    Ok(quote::quote! {
        #f
        ::fabric::__export_guest!(#name);
    })
}
